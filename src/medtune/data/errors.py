"""Bad input never vanishes: it raises a ``DataError`` naming file, line and field,
or, under ``on_error: skip``, it is counted in a ``SkipLog`` that the data card lists."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

OnError = Literal["raise", "skip"]


class DataError(ValueError):
    """A problem in an input file, located as precisely as the format allows."""

    def __init__(self, file: str, message: str, line: int | None = None, field: str | None = None):
        self.file, self.line, self.field, self.message = str(file), line, field, message
        where = self.file + (f":{line}" if line is not None else "")
        what = f" field '{field}'" if field else ""
        super().__init__(f"{where}:{what} {message}".replace(": ", ": ", 1))


@dataclass
class SkipLog:
    """Counts skipped input by reason and keeps a few examples of each for the data card."""

    max_examples: int = 3
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, error: DataError) -> None:
        reason = f"{error.field or 'record'}: {error.message}"
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.max_examples:
            shown.append(str(error))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def handle(self, error: DataError, on_error: OnError) -> None:
        """Raise the error, or count it when the policy is ``skip``."""
        if on_error == "raise":
            raise error
        self.add(error)

    def to_dict(self) -> dict:
        return {"total": self.total, "by_reason": dict(self.counts), "examples": self.examples}
