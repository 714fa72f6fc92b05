"""medtune: fine-tune small open LLMs into safe medical question-answering assistants."""

__version__ = "0.1.0"
