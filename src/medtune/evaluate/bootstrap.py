"""Bootstrap 95% confidence intervals, for one model's metric and for the base→tuned difference.

Items are resampled with replacement (seeded). A metric is a weighted mean of per-item values
(weight 1 for per-answer metrics; the answer-token count for eval loss and token accuracy, so a
resample's loss is its tokens' mean loss, as the whole-split figure is). For the difference the
SAME resampled items score both models (a paired bootstrap); the difference is significant when
its interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

LEVEL = 0.95


def indices(n: int, samples: int, seed: int):
    """``samples`` rows of ``n`` item indices drawn with replacement (numpy, seeded)."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def weighted_means(values: Sequence[float], weights: Sequence[float] | None, draws):
    import numpy as np

    v = np.asarray(values, dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    return (v[draws] * w[draws]).sum(axis=1) / w[draws].sum(axis=1)


def interval(stats) -> tuple[float, float]:
    import numpy as np

    lo, hi = np.quantile(stats, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(lo), float(hi)


def metric_ci(values: Sequence[float], weights: Sequence[float] | None = None, samples: int = 1000, seed: int = 0,
              transform: Callable[[float], float] | None = None) -> dict:
    """``{"value", "ci": [lo, hi]}``; ``transform`` maps the mean (e.g. exp for perplexity from loss)."""
    import numpy as np

    value = float(weighted_means(values, weights, np.arange(len(values))[None, :])[0]) if len(values) else float("nan")
    out = {"value": _t(transform, value), "ci": None}
    if samples and len(values) > 1:
        lo, hi = interval(weighted_means(values, weights, indices(len(values), samples, seed)))
        out["ci"] = [_t(transform, lo), _t(transform, hi)]
    return out


def paired_difference(base: Sequence[float], tuned: Sequence[float], weights_base: Sequence[float] | None = None,
                      weights_tuned: Sequence[float] | None = None, samples: int = 1000, seed: int = 0,
                      transform: Callable[[float], float] | None = None) -> dict:
    """tuned − base with a paired-bootstrap interval: ``{"difference", "ci", "significant"}``."""
    import numpy as np

    if len(base) != len(tuned):
        raise ValueError(f"paired difference needs the same items: {len(base)} base vs {len(tuned)} tuned values")
    whole = np.arange(len(base))[None, :]

    def diff(draws):
        return np.vectorize(lambda x: _t(transform, x))(weighted_means(tuned, weights_tuned, draws)) - np.vectorize(
            lambda x: _t(transform, x))(weighted_means(base, weights_base, draws))

    out = {"difference": float(diff(whole)[0]), "ci": None, "significant": None}
    if samples and len(base) > 1:
        lo, hi = interval(diff(indices(len(base), samples, seed)))
        out.update(ci=[lo, hi], significant=not (lo <= 0 <= hi))
    return out


def _t(transform, x: float) -> float:
    if transform is None:
        return float(x)
    try:
        return float(transform(x))
    except OverflowError:
        return float("inf")
