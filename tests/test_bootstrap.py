"""Bootstrap intervals: a constant is a point, a known difference is significant, no difference is not."""

import math

import pytest

from medtune.evaluate.bootstrap import metric_ci, paired_difference


def test_constant_gives_a_point_interval():
    out = metric_ci([0.4] * 20, samples=200, seed=1)
    assert out["value"] == pytest.approx(0.4) and out["ci"] == [pytest.approx(0.4), pytest.approx(0.4)]


def test_interval_contains_the_mean_and_is_seeded():
    values = [0, 1] * 25
    a, b = metric_ci(values, samples=500, seed=3), metric_ci(values, samples=500, seed=3)
    assert a == b
    assert a["ci"][0] < 0.5 < a["ci"][1] and a["ci"][1] - a["ci"][0] < 0.4


def test_weighted_mean_uses_the_weights():
    # per-item mean losses 1 and 3 over 1 and 3 tokens: the token mean is (1*1 + 3*3) / 4
    out = metric_ci([1.0, 3.0], weights=[1, 3], samples=0)
    assert out["value"] == pytest.approx(2.5) and out["ci"] is None


def test_transform_maps_the_interval():
    out = metric_ci([1.0, 2.0, 3.0, 2.0], samples=300, transform=math.exp)
    assert out["value"] == pytest.approx(math.exp(2.0))
    assert out["ci"][0] <= out["value"] <= out["ci"][1]


def test_known_difference_is_significant():
    base = [0.2, 0.3, 0.25, 0.35, 0.3] * 6
    tuned = [v + 0.1 for v in base]
    out = paired_difference(base, tuned, samples=500, seed=0)
    assert out["difference"] == pytest.approx(0.1)
    assert out["significant"] is True and out["ci"][0] > 0


def test_no_difference_is_not_significant():
    base = [0, 1, 0, 1, 1, 0, 1, 0] * 4
    tuned = [1, 0, 0, 1, 0, 1, 1, 0] * 4  # same mean, different items
    out = paired_difference(base, tuned, samples=500, seed=0)
    assert out["difference"] == pytest.approx(0.0)
    assert out["significant"] is False and out["ci"][0] < 0 < out["ci"][1]


def test_paired_difference_needs_the_same_items():
    with pytest.raises(ValueError, match="same items"):
        paired_difference([1, 2], [1, 2, 3])
