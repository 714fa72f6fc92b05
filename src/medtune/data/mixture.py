"""Mixtures: how many records each source puts into the training mix, and which ones.

The mixture is drawn after cleaning (quality filter, PII scrubbing, dedupe), so the records a
source is asked for are records that survived; the split and decontamination come after it.
Per source (``SourceConfig``):

* none of ``count``/``weight``/``fraction``: every record;
* ``count: n``: a seeded sample of ``n`` (every record when the source has fewer, unless ``replace``);
* ``fraction: f``: a seeded sample of ``round(f * loaded)`` records (for ``replay``: that share of
  the earlier stage's training mixture), at most what is left after cleaning;
* ``weight: w``: with ``data.total``, ``round(left * w / W)`` records, where ``left`` is ``total``
  minus the records the other sources put in and ``W`` the sum of the weights; asking for more
  than a source has is an error unless it sets ``replace``. Without ``total``: the largest mixture
  with these proportions that repeats no record (the scarcest source, smallest ``size / w``, goes
  in whole).

``replace`` lets a source be asked for more records than it has: every record goes in
``n // size`` times, then a seeded sample of ``n % size`` once more; copies get the ids
``<id>#2``, ``<id>#3``… and ``meta["copy_of"]`` (the split keeps them beside their original).
Each source's sample is seeded by ``(data.seed, kind, file or folder name)``, so adding a source changes
no other source's sample, and the same config draws the same mixture wherever the data lies (an
absolute path differs from one checkout or machine to the next); sampled records keep their input order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from medtune.core.config import SourceConfig
from medtune.data.clean import StepResult
from medtune.data.errors import DataError
from medtune.data.records import Record


@dataclass
class Mixture:
    picked: list[list[Record]]
    """Per configured source, its records in the mixture (copies included)."""
    step: StepResult
    """The mixture as a step: all picked records, ``dropped["not_sampled"]`` per source."""
    repeated: int
    """Copies added by ``replace`` (so records out = in - dropped + repeated)."""


def mix(pools: list[list[Record]], sources: list[SourceConfig], loaded: list[int], total: int | None, seed: int) -> Mixture:
    """Sample each source's cleaned records (``pools``) to the counts of ``mixture_counts``."""
    counts = mixture_counts(sources, loaded, [len(p) for p in pools], total)
    step = StepResult(records=[])
    picked, repeated = [], 0
    for src, pool, n in zip(sources, pools, counts):
        chosen = draw(pool, n, random.Random(f"{seed}:{src.kind}:{sample_key(src.path)}"))
        kept = {r.id for r in chosen}
        for r in pool:
            if r.id not in kept:
                step.drop("not_sampled", r)
        repeated += max(0, n - len(pool))
        picked.append(chosen)
        step.records.extend(chosen)
    return Mixture(picked, step, repeated)


def mixture_counts(sources: list[SourceConfig], loaded: list[int], available: list[int], total: int | None) -> list[int]:
    """Records each source puts into the mixture (see the module docstring)."""
    counts: list[int] = []
    for src, n_loaded, n_available in zip(sources, loaded, available):
        if src.count is not None:
            counts.append(src.count if src.replace else min(src.count, n_available))
        elif src.fraction is not None:
            counts.append(min(round(src.fraction * n_loaded), n_available))
        else:
            counts.append(n_available)  # weighted sources are set below
    weighted = [i for i, src in enumerate(sources) if src.weight is not None]
    if not weighted:
        return counts
    weight_sum = sum(sources[i].weight for i in weighted)
    if total is not None:
        left = total - sum(c for i, c in enumerate(counts) if i not in weighted)
        if left <= 0:
            raise ValueError(f"data.total={total} leaves no records for the weighted sources (the other sources put in {total - left})")
        for i in weighted:
            counts[i] = round(left * sources[i].weight / weight_sum)
            if counts[i] > available[i] and not sources[i].replace:
                raise DataError(
                    sources[i].path,
                    f"data.sources[{i}] ({sources[i].kind}): weight {sources[i].weight} asks for {counts[i]} of data.total={total} "
                    f"records but only {available[i]} are left after cleaning; lower data.total or set replace: true",
                )
    else:
        scale = min(available[i] / sources[i].weight for i in weighted)
        for i in weighted:
            counts[i] = min(available[i], round(scale * sources[i].weight))
    for i, (src, n) in enumerate(zip(sources, counts)):
        if n > 0 and available[i] == 0:
            raise DataError(src.path, f"data.sources[{i}] ({src.kind}): no records left after cleaning, nothing to sample {n} from")
    return counts


def sample_key(path: str) -> str:
    """The part of a source's path that seeds its sample: its last component (``data/x.jsonl`` → ``x.jsonl``,
    a Hub id ``org/name`` → ``name``), not where it lies."""
    return str(path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def draw(pool: list[Record], n: int, rng: random.Random) -> list[Record]:
    """``n`` records of ``pool`` in pool order; beyond ``len(pool)``, whole rounds of copies first."""
    if n == 0:
        return []
    rounds, rest = divmod(n, len(pool))
    chosen = [_copy(r, k) for k in range(rounds) for r in pool]
    chosen += [_copy(pool[j], rounds) for j in sorted(rng.sample(range(len(pool)), rest))]
    return chosen


def _copy(r: Record, k: int) -> Record:
    """The record itself (``k == 0``) or its ``k + 1``-th copy."""
    if k == 0:
        return r
    return replace(r, id=f"{r.id}#{k + 1}", meta={**r.meta, "copy_of": r.meta.get("copy_of", r.id)})
