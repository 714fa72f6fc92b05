"""MedMCQA: 4-option questions from Indian medical entrance exams (AIIMS/NEET-PG).

Two shapes, told apart per row:

* Hugging Face (``openlifescienceai/medmcqa``): ``question, opa, opb, opc, opd, cop, exp,
  subject_name, topic_name, id``; ``cop`` is the correct option's index, 0–3 on the Hub
  (``cop_base=1`` for the original GitHub JSON, where it is 1–4); ``exp`` is the explanation;
* medagents-benchmark (``mcq/medmcqa.test.jsonl``): ``question, options{A..D}, answer_idx``.

Records come from ``mcq.mcq_record`` (``answer_format="letter_explanation"`` puts ``exp``
after the answer). The public test split has no answers (``cop`` = -1): those rows are errors
(skipped under ``on_error="skip"``), since an item without a key can neither train nor score.
"""

from __future__ import annotations

from medtune.data.errors import DataError, OnError, SkipLog
from medtune.data.files import field_text
from medtune.data.records import Record
from medtune.data.sources import mcq
from medtune.data.sources.rows import collect, source_name

LICENSE = "apache-2.0"
HUB_IDS = ("openlifescienceai/medmcqa",)
_OPTION_COLUMNS = ("opa", "opb", "opc", "opd")


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    source: str | None = None,
    license: str = LICENSE,
    answer_format: mcq.AnswerFormat = "letter",
    cop_base: int = 0,
) -> list[Record]:
    """MedMCQA records from a file or Hub id.

    Args:
        cop_base: what ``cop`` counts from: 0 on the Hub, 1 in the original GitHub release.
        Others as in ``mcq.load``.
    """
    mcq.check_format(answer_format)
    if cop_base not in (0, 1):
        raise ValueError(f"cop_base must be 0 or 1, got {cop_base!r}")
    source = source or source_name(path)

    def to_record(origin: str, line: int, row: dict) -> Record:
        if "options" in row:
            return mcq.lettered_row(origin, line, row, source=source, license=license, answer_format=answer_format, explanation="exp")
        stem = field_text(origin, line, row, "question")
        options = {letter: field_text(origin, line, row, col) for letter, col in zip(mcq.LETTERS, _OPTION_COLUMNS)}
        cop = row.get("cop")
        if isinstance(cop, str) and cop.strip().lstrip("-").isdigit():
            cop = int(cop)
        if cop is None:
            raise DataError(origin, "missing field" if "cop" not in row else "field is null", line=line, field="cop")
        if not isinstance(cop, int) or isinstance(cop, bool):
            raise DataError(origin, f"expected an integer option index, got {type(cop).__name__}", line=line, field="cop")
        if not 0 <= cop - cop_base < len(options):
            raise DataError(origin, f"option index {cop} out of range {cop_base}..{cop_base + 3} (no answer key?)", line=line, field="cop")
        extra = {k: row[k] for k in ("subject_name", "topic_name", "choice_type") if isinstance(row.get(k), str) and row[k]}
        original = row.get("id")
        return mcq.mcq_record(
            id=f"{source}-{original or line}",
            source=source,
            license=license,
            stem=stem,
            options=options,
            answer_idx=mcq.LETTERS[cop - cop_base],
            answer_format=answer_format,
            explanation=field_text(origin, line, row, "exp", required=False),
            meta=extra,
        )

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split)
