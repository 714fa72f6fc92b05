"""The one record type every data source produces.

Adapters (one per corpus, in ``medtune.data.sources``) map their corpus onto
``Record``; the rest of the pipeline (filters, templates, training, evaluation)
never knows where a record came from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medtune.core.atomic import atomic_file


@dataclass
class Record:
    id: str
    """Stable identifier, unique within its source (used for the deterministic split)."""
    source: str
    """Name of the corpus or file the record came from."""
    question: str
    """The user's turn (for multi-turn records: the first user turn)."""
    answer: str
    """The reference assistant answer (for multi-turn records: the last assistant turn)."""
    reasoning: str | None = None
    """Optional chain of thought, rendered in ``<think>`` or dropped by the template."""
    messages: list[dict[str, str]] | None = None
    """Full multi-turn dialogue (``role``/``content``); when set it wins over question/answer."""
    license: str = "unknown"
    """Licence tag of the source corpus."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Anything else worth keeping (category, original index, answer letter…)."""
    document: str | None = None
    """Id of the document the record came from, when the corpus has documents with several questions
    (MedQuAD); records of one document stay on one side of the held-out split (``data.split_by``)."""
    rejected: str | None = None
    """Preference records (DPO): the dispreferred last assistant turn; ``answer`` is the chosen one."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def dialogue(self) -> list[dict[str, str]]:
        """The conversation without a system prompt: explicit messages or question/answer."""
        if self.messages:
            return [dict(m) for m in self.messages]
        return [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.answer}]


def write_jsonl(path: Path, records: list[Record]) -> None:
    """Records as JSON lines (UTF-8, one record a line)."""
    with atomic_file(path) as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[Record]:
    """Records written by ``write_jsonl`` (a run's data/train.jsonl, eval.jsonl)."""
    with open(path, encoding="utf-8") as f:
        return [Record.from_dict(json.loads(line)) for line in f if line.strip()]
