"""PubMedQA: yes/no/maybe questions about PubMed abstracts, as lettered MCQ records.

Three shapes, told apart per row:

* the expert set ``ori_pqal.json`` (pubmedqa/pubmedqa): an object id → ``{QUESTION, CONTEXTS,
  final_decision, LONG_ANSWER, ...}``;
* the Hub's ``qiaojin/PubMedQA`` (config ``pqa_labeled``): ``pubid, question, context{contexts},
  long_answer, final_decision``;
* medagents-benchmark's lettered ``mcq/pubmedqa.*.jsonl``: ``question`` (contexts, then the
  question, one per line), ``options{A: yes, B: no, C: maybe}``, ``answer_idx``,
  ``answer_rationale``.

All become the medagents layout: stem = contexts and question one per line, options
``A. yes / B. no / C. maybe``, so the expert set's test ids give the same text as medagents'
test file. ``LONG_ANSWER`` is the explanation (``answer_format="letter_explanation"``).
``context`` picks what precedes the question: ``abstract`` (the default: the abstract without its
conclusion, the paper's reasoning-required setting), ``conclusion`` (``LONG_ANSWER`` alone, a
reduced form of the paper's reasoning-free setting: short rows a small model learns in minutes) or
``both`` (abstract, then conclusion). ``only_ids``/``without_ids`` take a JSON file whose keys (or items) are PubMedQA ids, e.g.
``test_ground_truth.json``: ``without_ids`` keeps the expert set's 500 non-test items for training.
The chain-of-thought form of the expert set is ``reasoning.load(..., shape="pubmedqa")``.
"""

from __future__ import annotations

import json
from pathlib import Path

from medtune.data.errors import DataError, LeftOut, OnError, SkipLog
from medtune.data.files import field_text
from medtune.data.records import Record
from medtune.data.sources import mcq
from medtune.data.sources.rows import collect, source_name

LICENSE = "mit"
HUB_IDS = ("qiaojin/PubMedQA",)
DECISIONS = {"yes": "A", "no": "B", "maybe": "C"}
CONTEXTS = ("abstract", "conclusion", "both")


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    config: str | None = "pqa_labeled",
    source: str | None = None,
    license: str = LICENSE,
    answer_format: mcq.AnswerFormat = "letter",
    only_ids: str | None = None,
    without_ids: str | None = None,
    context: str = "abstract",
) -> list[Record]:
    """PubMedQA MCQ records from a file or Hub id.

    Args:
        config: Hub configuration (``pqa_labeled`` is the expert set).
        only_ids: JSON file of ids to keep (e.g. ``test_ground_truth.json``).
        without_ids: JSON file of ids to leave out.
        context: ``abstract`` | ``conclusion`` | ``both`` (see the module docstring).
        Others as in ``mcq.load``.
    """
    mcq.check_format(answer_format)
    if context not in CONTEXTS:
        raise DataError(str(path), f"context must be one of {', '.join(CONTEXTS)}, got {context!r}", field="context")
    source = source or source_name(path)
    keep = read_ids(only_ids) if only_ids else None
    drop = read_ids(without_ids) if without_ids else set()

    def to_record(origin: str, line: int, row: dict) -> Record:
        item = parse(origin, line, row)
        filter_ids(item["id"], keep, only_ids, drop, without_ids)
        return mcq.mcq_record(
            id=f"{source}-{item['id'] or line}",
            source=source,
            license=license,
            stem=stem(item, context, origin, line),
            options={letter: decision for decision, letter in DECISIONS.items()},
            answer_idx=DECISIONS[item["decision"]],
            answer_format=answer_format,
            explanation=item["long_answer"],
        )

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split, config=config)


def parse(origin: str, line: int, row: dict) -> dict:
    """``{id, question, contexts, long_answer, long_answer_field, decision}`` from any of the three shapes."""
    if "options" in row:  # medagents: contexts and question in one text, one per line
        *contexts, question = field_text(origin, line, row, "question").split("\n")
        letter = field_text(origin, line, row, "answer_idx").upper()
        options = mcq.read_options(origin, line, row, "options")
        if letter not in options:
            raise DataError(origin, f"'{letter}' is not one of the options {', '.join(options)}", line=line, field="answer_idx")
        decision, long_answer, id_field, long_field = (
            options[letter].lower(),
            field_text(origin, line, row, "answer_rationale", required=False),
            "realidx",
            "answer_rationale",
        )
    elif "QUESTION" in row:  # ori_pqal.json
        question = field_text(origin, line, row, "QUESTION")
        contexts = _contexts(origin, line, row.get("CONTEXTS"), "CONTEXTS")
        decision = field_text(origin, line, row, "final_decision").lower()
        long_answer, id_field, long_field = field_text(origin, line, row, "LONG_ANSWER", required=False), "id", "LONG_ANSWER"
    else:  # qiaojin/PubMedQA
        question = field_text(origin, line, row, "question")
        context = row.get("context")
        contexts = _contexts(origin, line, context.get("contexts") if isinstance(context, dict) else context, "context")
        decision = field_text(origin, line, row, "final_decision").lower()
        long_answer, id_field, long_field = field_text(origin, line, row, "long_answer", required=False), "pubid", "long_answer"
    if decision not in DECISIONS:
        raise DataError(origin, f"expected yes, no or maybe, got {decision!r}", line=line, field="final_decision")
    original = row.get(id_field)
    return {
        "id": str(original) if original not in (None, "") else "",
        "question": question.strip(),
        "contexts": contexts,
        "long_answer": long_answer,
        "long_answer_field": long_field,
        "decision": decision,
    }


def stem(item: dict, context: str = "abstract", origin: str = "", line: int | None = None) -> str:
    """The medagents layout: each context on its own line, then the question.

    ``context="conclusion"`` or ``"both"`` puts the item's conclusion (``LONG_ANSWER``) on a line of its own
    (after the abstract for ``both``); an item without one is an error naming its line.
    """
    lines = list(item["contexts"]) if context != "conclusion" else []
    if context != "abstract":
        if not item["long_answer"]:
            raise DataError(origin, f"no conclusion for context={context!r}", line=line, field=item["long_answer_field"])
        lines.append(" ".join(item["long_answer"].split()))
    return "\n".join([*lines, item["question"]])


def filter_ids(item_id: str, keep: set[str] | None, only_ids: str | None, drop: set[str], without_ids: str | None) -> None:
    """Raise ``LeftOut`` (counted in the data card) for an item that ``only_ids``/``without_ids`` leave out."""
    if keep is not None and item_id not in keep:
        raise LeftOut(f"not in only_ids ({Path(str(only_ids)).name})")
    if item_id in drop:
        raise LeftOut(f"in without_ids ({Path(str(without_ids)).name})")


def read_ids(path: str) -> set[str]:
    """Ids from a JSON object's keys or a JSON list (e.g. ``test_ground_truth.json``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(str(path), "file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(str(path), f"not a JSON file of ids ({e})") from None
    if not isinstance(data, (dict, list)):
        raise DataError(str(path), "expected a JSON object or list of ids")
    return {str(k) for k in data}


def _contexts(origin: str, line: int, value, name: str) -> list[str]:
    if value is None:
        raise DataError(origin, "missing field", line=line, field=name)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise DataError(origin, f"expected a list of texts, got {type(value).__name__}", line=line, field=name)
    return [c.strip() for c in value if c.strip()]
