"""Where an adapter's rows come from: a local file, or a dataset on the Hugging Face Hub.

Both give ``(line, row)`` pairs that go through the adapter's one row-mapping function, so a
corpus read from the Hub and the same corpus read from a downloaded file become the same records.
Errors name an *origin*: the file path, or ``hf:<org/name>/<split>`` for Hub rows (where the
"line" is the 1-based row index).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

from medtune.data.errors import DataError, KnownGap, LeftOut, OnError, SkipLog
from medtune.data.files import FORMATS, read_rows
from medtune.data.records import Record

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
DEFAULT_CONFIGS = {"FreedomIntelligence/medical-o1-reasoning-SFT": "en", "qiaojin/PubMedQA": "pqa_labeled"}
"""Hub datasets that need a configuration name, and the one medtune reads when none is given."""
HUB_PROBE_TIMEOUT_S = 5.0
"""How long to wait for a TCP connection to the Hub before calling it unreachable."""

RowMapper = Callable[[str, int, dict], Record]
"""``(origin, line, row) -> Record``; raises ``DataError`` for a bad row, ``LeftOut`` for a good
row that an option filters out (both counted, never silently lost)."""


def collect(
    path: str,
    to_record: RowMapper,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    config: str | None = None,
) -> list[Record]:
    """Map every row of ``path`` (file or Hub id) to a record; bad rows raise or are counted."""
    check_policy(on_error)
    skips = skips if skips is not None else SkipLog()
    origin, rows = open_rows(path, on_error=on_error, skips=skips, split=split, config=config)
    records: list[Record] = []
    first_line: dict[str, int] = {}  # record id → the line that gave it
    for line, row in rows:
        if limit is not None and len(records) >= limit:
            break
        try:
            record = to_record(origin, line, row)
            if first_line.setdefault(record.id, line) != line:  # the later row would collide in the split and the card
                raise DataError(origin, f"record id {record.id!r} repeats line {first_line[record.id]}", line=line, field="id")
        except KnownGap as e:
            skips.add(e)
            continue
        except DataError as e:
            skips.handle(e, on_error)
            continue
        except LeftOut as e:
            skips.left_out[e.reason] += 1
            continue
        records.append(record)
    return records


def check_policy(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def open_rows(
    path: str, *, on_error: OnError, skips: SkipLog, split: str = "train", config: str | None = None
) -> tuple[str, Iterator[tuple[int, dict]]]:
    """``(origin, rows)`` for a local file if ``path`` exists, else for a Hub dataset id."""
    if Path(path).exists() or not is_hub_id(path):
        return str(path), read_rows(path, on_error, skips)
    return f"hf:{path}/{split}", hub_rows(path, split=split, config=config or DEFAULT_CONFIGS.get(path))


def is_hub_id(path: str) -> bool:
    """``org/name`` that is not a missing local file such as ``data/train.jsonl``."""
    p = str(path)
    return bool(HUB_ID.fullmatch(p)) and not p.lower().endswith((*FORMATS, ".xml"))


def source_name(path: str) -> str:
    """Default ``Record.source``: the file's stem, the folder's name, or the Hub dataset's name."""
    p = Path(path)
    if p.exists():
        return p.name if p.is_dir() else p.stem
    return str(path).rstrip("/").split("/")[-1]


def hub_rows(name: str, *, split: str = "train", config: str | None = None) -> Iterator[tuple[int, dict]]:
    """Rows of a Hub dataset via ``datasets.load_dataset``, failing in seconds when offline.

    ``datasets`` retries an unreachable Hub for ~25 s before giving up, so we first try a plain
    TCP connection to the endpoint (``HF_ENDPOINT``) with a short timeout. With ``HF_HUB_OFFLINE=1``
    the probe is skipped and ``datasets`` answers from its cache (or fails at once).
    """
    import datasets
    from huggingface_hub import constants

    origin = f"hf:{name}/{split}"
    if not datasets.config.HF_HUB_OFFLINE:
        reason = _unreachable(constants.ENDPOINT)
        if reason:
            raise DataError(
                origin,
                f"cannot reach the Hugging Face Hub (offline?) at {constants.ENDPOINT}: {reason}; "
                "pass a local file, or set HF_HUB_OFFLINE=1 to use a cached copy",
            )
    try:
        data = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many types; one clear line is what the user needs
        first = (str(e).strip().splitlines() or [""])[0][:300]
        offline = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if datasets.config.HF_HUB_OFFLINE else ""
        raise DataError(origin, f"cannot load from the Hugging Face Hub{offline}: {type(e).__name__}: {first}") from None
    return ((number, dict(row)) for number, row in enumerate(data, start=1))


def _unreachable(endpoint: str) -> str | None:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return None


def pick(row: dict, *names: str) -> str | None:
    """The first of ``names`` present in ``row`` (exact, then case-insensitive), else ``None``."""
    for name in names:
        if name in row:
            return name
    lower = {k.lower(): k for k in row if isinstance(k, str)}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None
