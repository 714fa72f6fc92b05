"""Medical flashcards (medalpaca's ``medical_meadow_medical_flashcards``): short Q&A pairs
from Anki decks, as ``{instruction, input, output}`` with the question in ``input`` and the
answer in ``output``; the (constant) instruction is kept in ``meta["instruction"]``."""

from __future__ import annotations

from medtune.data.errors import OnError, SkipLog
from medtune.data.files import field_text
from medtune.data.records import Record
from medtune.data.sources.rows import collect, source_name

LICENSE = "cc"
"""The Hub card says only "cc" (a Creative Commons licence, version unstated)."""
HUB_IDS = ("medalpaca/medical_meadow_medical_flashcards",)


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    source: str | None = None,
    license: str = LICENSE,
) -> list[Record]:
    """Flashcard records from a file or Hub id (arguments as in ``chatdoctor.load``)."""
    source = source or source_name(path)

    def to_record(origin: str, line: int, row: dict) -> Record:
        instruction = field_text(origin, line, row, "instruction", required=False)
        return Record(
            id=f"{source}-{line}",
            source=source,
            question=field_text(origin, line, row, "input"),
            answer=field_text(origin, line, row, "output"),
            license=license,
            meta={"instruction": instruction} if instruction else {},
        )

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split)
