"""MedQA (USMLE): 4- or 5-option clinical vignettes.

Rows are ``{question, options{A..D|E}, answer_idx, answer}`` (medagents-benchmark's
``mcq/medqa.test.jsonl``, ``GBaker/MedQA-USMLE-4-options``; bigbio's list-of-``{key, value}``
options also work). Records come from ``mcq.mcq_record``: lettered options in the question, the
letter (``answer_format``) as the answer, the structured item in ``meta``; ``meta_info``
(``step1``/``step2&3``) is kept.
"""

from __future__ import annotations

from medtune.data.errors import OnError, SkipLog
from medtune.data.records import Record
from medtune.data.sources import mcq

LICENSE = "mit"
"""jind11/MedQA is MIT-licensed."""
HUB_IDS = ("GBaker/MedQA-USMLE-4-options",)
"""(``bigbio/med_qa`` is a loading script, which ``datasets`` 4+ no longer runs; download its
files and pass the path instead: its list-of-``{key, value}`` options are read.)"""


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
) -> list[Record]:
    """MedQA records from a JSONL/JSON/CSV/Parquet file or Hub id (arguments as in ``mcq.load``)."""
    return mcq.load(
        path, on_error=on_error, skips=skips, limit=limit, split=split, source=source, license=license, answer_format=answer_format
    )
