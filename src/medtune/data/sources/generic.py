"""Any JSONL/JSON/CSV/Parquet file (or Hub dataset) with a declared field mapping.

Question–answer mode: id from the ``id`` column or ``<source>-<line>``, the other scalar columns in
``meta``; written as a row mapper so local files and Hub rows go through the same code. Messages mode (``messages="conversations"``)
reads a list of ``{role, content}`` turns (ShareGPT's ``{from: human|gpt|system, value}`` also
works); ``question``/``answer`` become the first user and last assistant turns.
"""

from __future__ import annotations

from medtune.data.errors import DataError, OnError, SkipLog
from medtune.data.files import field_text
from medtune.data.records import Record
from medtune.data.sources.rows import collect, source_name

LICENSE = "unknown"
HUB_IDS: tuple[str, ...] = ()
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    config: str | None = None,
    source: str | None = None,
    license: str = LICENSE,
    question: str = "question",
    answer: str = "answer",
    id: str | None = "id",
    reasoning: str | None = None,
    messages: str | None = None,
    document: str | None = "document",
) -> list[Record]:
    """Records from a file or Hub id with the named columns.

    Args:
        question, answer: columns holding the user turn and the reference answer.
        id: column with a stable id (``None``: ``<source>-<line>``).
        reasoning: optional column with a chain of thought.
        messages: column with a list of turns; when set, ``question``/``answer`` are ignored.
        document: column with the id of the document a record came from (records of one document
            stay on one side of the held-out split); absent or empty = none.
        Others as in ``chatdoctor.load``.
    """
    source = source or source_name(path)
    mapped = {question, answer, id, reasoning, messages, document}

    def to_record(origin: str, line: int, row: dict) -> Record:
        rid = field_text(origin, line, row, id, required=False) if id and id in row else None
        extra = {k: v for k, v in row.items() if k not in mapped and isinstance(v, (str, int, float, bool))}
        doc = field_text(origin, line, row, document, required=False) if document and row.get(document) is not None else None
        common = dict(id=rid or f"{source}-{line}", source=source, license=license, meta=extra, document=doc or None)
        r = field_text(origin, line, row, reasoning, required=False) if reasoning else None
        if messages:
            turns = read_messages(origin, line, row, messages)
            q = next(t["content"] for t in turns if t["role"] == "user")
            a = next(t["content"] for t in reversed(turns) if t["role"] == "assistant")
            return Record(question=q, answer=a, reasoning=r, messages=turns, **common)
        q = field_text(origin, line, row, question)
        a = field_text(origin, line, row, answer)
        return Record(question=q, answer=a, reasoning=r, **common)

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split, config=config)


def read_messages(origin: str, line: int, row: dict, name: str) -> list[dict[str, str]]:
    """Validated ``[{role, content}]`` with at least one user and one assistant turn."""
    value = row.get(name)
    if value is None:
        raise DataError(origin, "missing field" if name not in row else "field is null", line=line, field=name)
    if not isinstance(value, list) or not value:
        raise DataError(origin, f"expected a non-empty list of turns, got {type(value).__name__}", line=line, field=name)
    turns = []
    for i, turn in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(turn, dict):
            raise DataError(origin, f"expected an object, got {type(turn).__name__}", line=line, field=where)
        role, content = turn.get("role", turn.get("from")), turn.get("content", turn.get("value"))
        if role not in _ROLES:
            raise DataError(origin, f"unknown role {role!r} (expected one of {', '.join(_ROLES)})", line=line, field=f"{where}.role")
        if not isinstance(content, str) or not content.strip():
            raise DataError(origin, "empty or not text", line=line, field=f"{where}.content")
        turns.append({"role": _ROLES[role], "content": content.strip()})
    roles = {t["role"] for t in turns}
    if not {"user", "assistant"} <= roles:
        raise DataError(origin, "needs at least one user and one assistant turn", line=line, field=name)
    return turns
