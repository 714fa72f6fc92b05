"""Reading rows from JSONL / JSON / CSV / Parquet files, each row tagged with its line
(or record) number, so that any later complaint can name file, line and field."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medtune.data.errors import DataError, OnError, SkipLog

FORMATS = (".jsonl", ".json", ".csv", ".parquet")
BOM = b"\xef\xbb\xbf"
_CSV_FIELD_LIMIT = 2**31 - 1
"""csv's default field limit (128 KiB) would stop a file at its first long answer."""
_UNDECODED = re.compile("[\udc80-\udcff]")
"""Bytes that were not UTF-8, as ``surrogateescape`` decoding leaves them."""


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
    if not raw.removeprefix(BOM).strip():
        raise DataError(str(path), "file is empty")
    if suffix == ".jsonl":
        yield from _jsonl(path, raw, on_error, skips)
    elif suffix == ".json":
        yield from _json(path, raw, on_error, skips)
    elif suffix == ".csv":
        yield from _csv(path, raw, on_error, skips)
    else:
        yield from _parquet(path)


class _BadJSON(ValueError):
    def __init__(self, reason: str, line: int | None = None):
        self.line = line
        super().__init__(reason)


def _loads(text: str, **kwargs) -> Any:
    """``json.loads`` whose every failure is a ``_BadJSON`` with a short reason: malformed JSON,
    a number too long to convert, nesting too deep for the parser."""
    try:
        return json.loads(text, **kwargs)
    except json.JSONDecodeError as e:
        raise _BadJSON(f"malformed JSON ({e.msg}, column {e.colno})", e.lineno) from None
    except RecursionError:
        raise _BadJSON("malformed JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise _BadJSON(f"malformed JSON ({e})") from None


_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(row: dict) -> bool:
    """A ``\\udXXX`` escape without its pair: valid JSON, but text that no UTF-8 file can hold
    (writing the prepared data would fail). Call only where ``_ESCAPED_SURROGATE`` matched the bytes."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _jsonl(path: Path, raw: bytes, on_error: OnError, skips: SkipLog) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(raw.splitlines(), start=1):
        line = line.removeprefix(BOM)  # the file's first line, or a file concatenated onto another
        if not line.strip():
            continue
        try:
            row = _loads(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            skips.handle(DataError(str(path), f"undecodable bytes ({e.reason} at byte {e.start})", line=number), on_error)
            continue
        except _BadJSON as e:
            skips.handle(DataError(str(path), str(e), line=number), on_error)
            continue
        if not isinstance(row, dict):
            skips.handle(DataError(str(path), f"expected a JSON object, got {type(row).__name__}", line=number), on_error)
            continue
        if _ESCAPED_SURROGATE.search(line) and _lone_surrogate(row):
            skips.handle(DataError(str(path), "invalid text (an unpaired \\ud800-\\udfff escape)", line=number), on_error)
            continue
        yield number, row


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(str(path), f"undecodable bytes ({e.reason} at byte {e.start})", line=line) from None


def _json(path: Path, raw: bytes, on_error: OnError, skips: SkipLog) -> Iterator[tuple[int, dict]]:
    text = _decode(path, raw)
    mapping = text.lstrip().startswith("{")
    outer: list[list] = []  # the pairs of the outermost object, where a repeated key is a lost record

    def keep_pairs(pairs: list) -> dict:
        outer[:] = [pairs]  # the parser finishes the outermost object last
        return dict(pairs)

    try:
        data = _loads(text, object_pairs_hook=keep_pairs) if mapping else _loads(text)
    except _BadJSON as e:
        raise DataError(str(path), str(e), line=e.line) from None
    if isinstance(data, dict):  # {id: row} objects, as PubMedQA ships
        if all(isinstance(v, dict) for v in data.values()):
            for key, n in Counter(k for k, _ in outer[0]).items():
                for _ in range(n - 1):  # json keeps the last of a repeated key: the others are lost
                    lost = DataError(str(path), f"id {key!r} repeats; an earlier record with it is overwritten", field="id")
                    skips.handle(lost, on_error)
            data = [{"id": k, **v} for k, v in data.items()]
        elif isinstance(data.get("data"), list):
            data = data["data"]
    if not isinstance(data, list):
        raise DataError(str(path), "expected a JSON list of objects (or an object of objects)")
    escapes = bool(_ESCAPED_SURROGATE.search(raw))
    for number, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            skips.handle(DataError(str(path), f"record {number} is a {type(row).__name__}, expected an object", line=number), on_error)
            continue
        if escapes and _lone_surrogate(row):
            skips.handle(DataError(str(path), f"record {number}: invalid text (an unpaired \\ud800-\\udfff escape)", line=number), on_error)
            continue
        yield number, row


def _csv(path: Path, raw: bytes, on_error: OnError, skips: SkipLog) -> Iterator[tuple[int, dict]]:
    """Rows of a CSV file; a row with bytes that are not UTF-8 (one row pasted from a Latin-1
    file) is that row's error, not the whole file's."""
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    reader = csv.DictReader(io.StringIO(raw.removeprefix(BOM).decode("utf-8", "surrogateescape"), newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(str(path), f"malformed CSV ({e})", line=reader.reader.line_num) from None
        bad = next((k for k, v in row.items() if isinstance(v, str) and _UNDECODED.search(v)), None)
        if bad is not None or any(isinstance(k, str) and _UNDECODED.search(k) for k in row):
            skips.handle(DataError(str(path), "undecodable bytes (not UTF-8)", line=reader.line_num, field=bad), on_error)
            continue
        yield reader.line_num, dict(row)


def _parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(str(path), f"not a readable Parquet file ({type(e).__name__}: {str(e)[:200]})") from None
    yield from enumerate(table.to_pylist(), start=1)


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
