"""Lettered multiple-choice items, and the one place where an MCQ item becomes SFT text.

The shape read here is the one medagents-benchmark uses for every benchmark it ships
(``mcq/medqa.test.jsonl``, ``mcq/medmcqa.test.jsonl``, ``mcq/pubmedqa.*.jsonl``)::

    {"question": "...", "options": {"A": "...", "B": "..."}, "answer_idx": "B", "answer": "...",
     "realidx": ..., "answer_rationale": "..." (PubMedQA only)}

``options`` may also be a list of ``{"key", "value"}`` objects (bigbio) or a plain list (lettered
A, B, … in order). ``medqa``, ``medmcqa`` and ``pubmedqa`` build their records with
``mcq_record`` so every MCQ record looks the same:

* ``question``: the stem, a blank line, then one ``A. option`` line per option;
* ``answer`` by ``answer_format``: ``letter`` → ``"B"``; ``letter_text`` → ``"B. <option>"``;
  ``letter_explanation`` → ``"B. <option>\\n\\nExplanation: <why>"`` (``letter_text`` when the
  item has no explanation); ``text`` → ``"<option>"``, the option's own words without a letter (for
  yes/no/maybe items the word has a meaning the letter lacks; docs/recipes.md);
* ``meta``: ``task="mcq"``, ``stem``, ``options`` (letter → text), ``answer_idx`` (the letter),
  ``explanation`` when known — enough for the evaluation code to score from the same records.
"""

from __future__ import annotations

from typing import Literal

from medtune.data.errors import DataError, OnError, SkipLog
from medtune.data.files import field_text
from medtune.data.records import Record
from medtune.data.sources.rows import collect, source_name

LICENSE = "mit"
"""medagents-benchmark's licence (xk-huang/medagents-benchmark)."""
HUB_IDS: tuple[str, ...] = ()

AnswerFormat = Literal["letter", "letter_text", "letter_explanation", "text"]
ANSWER_FORMATS = ("letter", "letter_text", "letter_explanation", "text")
LETTERS = "ABCDEFGHIJ"


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    source: str | None = None,
    license: str = LICENSE,
    answer_format: AnswerFormat = "letter",
) -> list[Record]:
    """MCQ records from a medagents-shaped JSONL/JSON/CSV/Parquet file or Hub id.

    Args:
        answer_format: ``letter``, ``letter_text`` or ``letter_explanation`` (see module doc).
        Others as in ``chatdoctor.load``.
    """
    check_format(answer_format)
    source = source or source_name(path)

    def to_record(origin: str, line: int, row: dict) -> Record:
        return lettered_row(origin, line, row, source=source, license=license, answer_format=answer_format)

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split)


def check_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}; got {answer_format!r}")


def lettered_row(
    origin: str, line: int, row: dict, *, source: str, license: str, answer_format: AnswerFormat, explanation: str = "answer_rationale"
) -> Record:
    """One medagents-shaped row → record (``explanation``: the column holding the rationale)."""
    stem = field_text(origin, line, row, "question")
    options = read_options(origin, line, row, "options")
    letter = field_text(origin, line, row, "answer_idx").upper()
    if letter not in options:
        raise DataError(origin, f"'{letter}' is not one of the options {', '.join(options)}", line=line, field="answer_idx")
    text = field_text(origin, line, row, "answer", required=False)
    if text and text != options[letter]:
        raise DataError(origin, f"does not match option {letter} ({options[letter][:60]!r})", line=line, field="answer")
    original = row.get("realidx", row.get("id"))
    extra = {k: row[k] for k in ("meta_info", "subject_name", "topic_name") if isinstance(row.get(k), str) and row[k]}
    return mcq_record(
        id=f"{source}-{original if original not in (None, '') else line}",
        source=source,
        license=license,
        stem=stem,
        options=options,
        answer_idx=letter,
        answer_format=answer_format,
        explanation=field_text(origin, line, row, explanation, required=False),
        meta=extra,
    )


def read_options(origin: str, line: int, row: dict, name: str) -> dict[str, str]:
    """``{"A": text, ...}`` from a dict, a list of ``{key, value}``, or a plain list."""
    value = row.get(name)
    if value is None:
        raise DataError(origin, "missing field" if name not in row else "field is null", line=line, field=name)
    if isinstance(value, list):
        if all(isinstance(v, dict) and "key" in v and "value" in v for v in value):
            value = {str(v["key"]): v["value"] for v in value}
        else:
            value = dict(zip(LETTERS, value))
    if not isinstance(value, dict):
        raise DataError(origin, f"expected an object of lettered options, got {type(value).__name__}", line=line, field=name)
    if len(value) < 2:
        raise DataError(origin, f"expected at least 2 options, got {len(value)}", line=line, field=name)
    options = {}
    for key, text in value.items():
        if not isinstance(text, (str, int, float)) or isinstance(text, bool) or not str(text).strip():
            raise DataError(origin, f"option {key!r} is empty or not text", line=line, field=f"{name}.{key}")
        options[str(key).strip().upper()] = str(text).strip()
    return options


def mcq_record(
    *,
    id: str,
    source: str,
    license: str,
    stem: str,
    options: dict[str, str],
    answer_idx: str,
    answer_format: AnswerFormat = "letter",
    explanation: str | None = None,
    meta: dict | None = None,
) -> Record:
    """The SFT record for one MCQ item (see the module docstring for the text layout)."""
    question = stem + "\n\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
    if answer_format == "letter":
        answer = answer_idx
    elif answer_format == "text":
        answer = options[answer_idx]
    else:
        answer = f"{answer_idx}. {options[answer_idx]}"
        if answer_format == "letter_explanation" and explanation:
            answer += f"\n\nExplanation: {explanation}"
    item = {"task": "mcq", "stem": stem, "options": options, "answer_idx": answer_idx}
    if explanation:
        item["explanation"] = explanation
    return Record(id=id, source=source, question=question, answer=answer, license=license, meta={**item, **(meta or {})})
