"""The held-out split: which records train and which are kept apart for evaluation.

The split is decided by a stable hash (``stable_fraction``), so adding records never reshuffles
the ones already there. What is hashed is the record's *group* (``data.split_by``):

* ``record``: each record on its own;
* ``document`` (the default): records of one document (``Record.document``, e.g. MedQuAD's "What is
  X", "symptoms of X", "treatment of X") land on the same side, so no sister question of a held-out
  answer is trained on; records without a document are their own group;
* ``source``: whole sources (``Record.source``) land on one side or the other.

``holdout_source`` overrides all of that: every record of that source (``Record.source``, or a
MedQuAD collection such as ``GARD``, ``meta["collection"]``) is held out and nothing else is, so the
evaluation measures a source the model never saw.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from medtune.data.records import Record


@dataclass
class Split:
    train: list[Record]
    eval: list[Record]
    dropped: int = 0
    """Records on neither side: the rest of a held-out group (or source) cut by ``eval_max``; never trained on."""
    groups: dict[str, int] = field(default_factory=dict)
    """Groups on each side: ``{"train": n, "eval": n}``."""


def stable_fraction(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (seed, key): the same record always lands in the same split."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def group_key(r: Record, by: str = "document") -> str:
    """What the split hashes for ``r``. A repeated copy (``meta["copy_of"]``) has its original's key."""
    if by == "source":
        return f"source:{r.source}"
    if by == "document" and r.document:
        return f"{r.source}/doc:{r.document}"
    return f"{r.source}/{r.meta.get('copy_of') or r.id}"


def in_source(r: Record, name: str) -> bool:
    """Whether ``r`` belongs to source ``name``: its ``Record.source`` or its collection (MedQuAD's ``GARD``, ``GHR``...)."""
    return name in (r.source, r.meta.get("collection"))


def split(records: list[Record], fraction: float, seed: int, eval_max: int | None = None, by: str = "document",
          holdout_source: str | None = None) -> Split:
    """Train and held-out records (input order kept on each side). Replayed records (``meta["replay"]``)
    were trained on in an earlier stage, so they always stay in train.

    With ``eval_max`` the held-out groups are taken in a second stable order, whole, until the cap;
    the other held-out groups go back to train, except with ``holdout_source`` (they are dropped,
    the source is never trained on). A group that straddles the cap gives its first records to eval
    and drops the rest (counted in ``dropped``), so no sister record is trained on.
    """
    if holdout_source is not None:
        held = [in_source(r, holdout_source) and not r.meta.get("replay") for r in records]
        if not any(held):
            names = sorted({r.source for r in records} | {r.meta["collection"] for r in records if r.meta.get("collection")})
            raise ValueError(f"data.holdout_source: no record of {holdout_source!r} (sources and collections: {', '.join(names)})")
    else:
        held = [not r.meta.get("replay") and stable_fraction(seed, group_key(r, by)) < fraction for r in records]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if held[i]:
            groups[group_key(r, by)].append(i)
    keep: set[int] = set()
    dropped: set[int] = set()
    if eval_max is None:
        keep = {i for members in groups.values() for i in members}
    else:
        for key in sorted(groups, key=lambda k: stable_fraction(seed + 1, k)):
            room, members = eval_max - len(keep), groups[key]
            if room <= 0:
                if holdout_source is not None:
                    dropped.update(members)
                continue
            keep.update(members[:room])
            dropped.update(members[room:])
    train = [r for i, r in enumerate(records) if i not in keep and i not in dropped]
    held_out = [r for i, r in enumerate(records) if i in keep]
    sides = {"train": len({group_key(r, by) for r in train}), "eval": len({group_key(r, by) for r in held_out})}
    return Split(train, held_out, len(dropped), sides)
