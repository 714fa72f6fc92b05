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


class KnownGap(DataError):
    """A row with a gap the corpus is known to have (MedQuAD's MedlinePlus questions whose answers
    were removed upstream): always counted in the ``SkipLog``, never raised, under every policy."""


class LeftOut(Exception):
    """Raised by an adapter's row mapping for a good row that a filter option leaves out on purpose
    (e.g. PubMedQA's ``without_ids``); counted in ``SkipLog.left_out`` under every policy."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass
class SkipLog:
    """Counts skipped input by reason and keeps a few examples of each for the data card."""

    max_examples: int = 3
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    left_out: Counter = field(default_factory=Counter)
    """Good rows left out on purpose by an option (reason → count); not errors, but still counted."""

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
        return {"total": self.total, "by_reason": dict(self.counts), "examples": self.examples, "left_out": dict(self.left_out)}
