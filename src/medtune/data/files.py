"""Reading rows from JSONL / JSON / CSV / Parquet files, each row tagged with its line
(or record) number, so that any later complaint can name file, line and field."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medtune.data.errors import DataError, OnError, SkipLog
from medtune.data.records import Record

FORMATS = (".jsonl", ".json", ".csv", ".parquet")


def read_rows(path: str | Path, on_error: OnError = "raise", skips: SkipLog | None = None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_or_record_number, row)`` for every row of a data file (1-based)."""
    path = Path(path)
    skips = skips if skips is not None else SkipLog()
    if not path.exists():
        raise DataError(str(path), "file does not exist")
    if path.is_dir():
        raise DataError(str(path), "is a directory, expected a data file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(str(path), f"unsupported format '{suffix}' (expected one of {', '.join(FORMATS)})")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(str(path), "file is empty")
    if suffix == ".jsonl":
        yield from _jsonl(path, raw, on_error, skips)
    elif suffix == ".json":
        yield from _json(path, raw)
    elif suffix == ".csv":
        yield from _csv(path, raw)
    else:
        yield from _parquet(path)


def _jsonl(path: Path, raw: bytes, on_error: OnError, skips: SkipLog) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            skips.handle(DataError(str(path), f"undecodable bytes ({e.reason} at byte {e.start})", line=number), on_error)
            continue
        except json.JSONDecodeError as e:
            skips.handle(DataError(str(path), f"malformed JSON ({e.msg}, column {e.colno})", line=number), on_error)
            continue
        if not isinstance(row, dict):
            skips.handle(DataError(str(path), f"expected a JSON object, got {type(row).__name__}", line=number), on_error)
            continue
        yield number, row


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(str(path), f"undecodable bytes ({e.reason} at byte {e.start})", line=line) from None


def _json(path: Path, raw: bytes) -> Iterator[tuple[int, dict]]:
    try:
        data = json.loads(_decode(path, raw))
    except json.JSONDecodeError as e:
        raise DataError(str(path), f"malformed JSON ({e.msg}, column {e.colno})", line=e.lineno) from None
    if isinstance(data, dict):  # {id: row} objects, as PubMedQA ships
        if all(isinstance(v, dict) for v in data.values()):
            data = [{"id": k, **v} for k, v in data.items()]
        elif isinstance(data.get("data"), list):
            data = data["data"]
    if not isinstance(data, list):
        raise DataError(str(path), "expected a JSON list of objects (or an object of objects)")
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(str(path), f"record {number} is a {type(row).__name__}, expected an object", line=number)
        yield number, row


def _csv(path: Path, raw: bytes) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(_decode(path, raw), newline=""))
    for row in reader:
        yield reader.line_num, dict(row)


def _parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
        yield number, row


def field_text(path: str | Path, line: int, row: dict, name: str, required: bool = True) -> str | None:
    """Return ``row[name]`` as stripped text, or raise naming file, line and field."""
    value: Any = row.get(name)
    if value is None:
        if required:
            raise DataError(str(path), "missing field" if name not in row else "field is null", line=line, field=name)
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(str(path), f"expected text, got {type(value).__name__}", line=line, field=name)
    value = value.strip()
    if required and not value:
        raise DataError(str(path), "empty or whitespace-only", line=line, field=name)
    return value


def read_qa(
    path: str | Path,
    question: str = "question",
    answer: str = "answer",
    id: str | None = "id",
    reasoning: str | None = None,
    source: str | None = None,
    license: str = "unknown",
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
) -> list[Record]:
    """Question–answer records from any supported file, with a declared field mapping."""
    path = Path(path)
    skips = skips if skips is not None else SkipLog()
    source = source or path.stem
    records = []
    for line, row in read_rows(path, on_error, skips):
        try:
            q = field_text(path, line, row, question)
            a = field_text(path, line, row, answer)
            r = field_text(path, line, row, reasoning, required=False) if reasoning else None
            rid = field_text(path, line, row, id, required=False) if id and id in row else None
        except DataError as e:
            skips.handle(e, on_error)
            continue
        extra = {k: v for k, v in row.items() if k not in {question, answer, id, reasoning} and isinstance(v, (str, int, float, bool))}
        records.append(Record(id=rid or f"{source}-{line}", source=source, question=q, answer=a, reasoning=r, license=license, meta=extra))
    return records
