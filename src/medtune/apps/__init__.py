"""The applications, the only code that renders: the CLI, the terminal chat, the Gradio UI, the HTTP API."""
