"""Chain-of-thought records: question, reasoning, answer.

Shapes (``shape="auto"`` tells them apart per row):

* ``o1``: medical-o1-reasoning-SFT (``FreedomIntelligence/medical-o1-reasoning-SFT``, config
  ``en``): ``Question``, ``Complex_CoT`` → ``Record.reasoning``, ``Response`` → answer;
* ``pubmedqa``: PubMedQA's expert set (any shape ``pubmedqa.parse`` reads) as CoT: the abstract's
  contexts and the question (``include_contexts=False`` keeps only the question),
  ``LONG_ANSWER`` as the reasoning and ``final_decision`` (yes/no/maybe) as the answer.
  ``only_ids``/``without_ids`` work as in ``pubmedqa.load``.

How the reasoning is rendered (``<think>`` block or dropped) is the template's business.
"""

from __future__ import annotations

from typing import Literal

from medtune.data.errors import DataError, OnError, SkipLog
from medtune.data.files import field_text
from medtune.data.records import Record
from medtune.data.sources import pubmedqa
from medtune.data.sources.rows import collect, source_name

LICENSE = "apache-2.0"
"""medical-o1-reasoning-SFT's licence; PubMedQA rows are tagged ``mit`` instead."""
HUB_IDS = ("FreedomIntelligence/medical-o1-reasoning-SFT",)


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    config: str | None = None,
    source: str | None = None,
    license: str | None = None,
    shape: Literal["auto", "o1", "pubmedqa"] = "auto",
    include_contexts: bool = True,
    only_ids: str | None = None,
    without_ids: str | None = None,
) -> list[Record]:
    """Reasoning records from a file or Hub id.

    Args:
        config: Hub configuration (``en`` for medical-o1-reasoning-SFT).
        license: licence tag (default: ``LICENSE``, or ``pubmedqa.LICENSE`` for PubMedQA rows).
        shape: ``o1``, ``pubmedqa``, or ``auto`` (by the row's fields).
        include_contexts: PubMedQA only: put the abstract's contexts before the question.
        only_ids, without_ids: PubMedQA only: JSON files of ids to keep / leave out.
        Others as in ``chatdoctor.load``.
    """
    if shape not in ("auto", "o1", "pubmedqa"):
        raise ValueError(f"shape must be 'auto', 'o1' or 'pubmedqa', got {shape!r}")
    source = source or source_name(path)
    keep = pubmedqa.read_ids(only_ids) if only_ids else None
    drop = pubmedqa.read_ids(without_ids) if without_ids else set()

    def to_record(origin: str, line: int, row: dict) -> Record:
        if shape == "o1" or (shape == "auto" and {"Question", "Complex_CoT", "Response"} & set(row)):
            return Record(
                id=f"{source}-{line}",
                source=source,
                question=field_text(origin, line, row, "Question"),
                reasoning=field_text(origin, line, row, "Complex_CoT"),
                answer=field_text(origin, line, row, "Response"),
                license=license or LICENSE,
            )
        if shape == "auto" and not ({"QUESTION", "final_decision", "answer_rationale"} & set(row)):
            raise DataError(
                origin, f"unknown shape (fields: {', '.join(map(str, row))}); expected Question/Complex_CoT/Response or PubMedQA", line=line
            )
        item = pubmedqa.parse(origin, line, row)
        pubmedqa.filter_ids(item["id"], keep, only_ids, drop, without_ids)
        if not item["long_answer"]:
            raise DataError(origin, "no long answer to use as the reasoning", line=line, field="LONG_ANSWER")
        return Record(
            id=f"{source}-{item['id'] or line}",
            source=source,
            question=pubmedqa.stem(item) if include_contexts else item["question"],
            reasoning=item["long_answer"],
            answer=item["decision"],
            license=license or pubmedqa.LICENSE,
            meta={"final_decision": item["decision"]},
        )

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split, config=config)
