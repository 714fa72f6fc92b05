"""Hypothesis profiles for the fuzz tests (tests/test_fuzz_*.py).

``ci`` (the default): few examples (``MEDTUNE_FUZZ_EXAMPLES`` sets how many, in
either profile), derandomized and without the example database, so ``make test`` stays short and gives
the same result on every machine. ``fuzz``: thousands of random examples,
for a deliberate search (``HYPOTHESIS_PROFILE=fuzz pytest tests/test_fuzz_data.py --hypothesis-show-statistics``).
An example that runs past the deadline fails: a pathological input must not hang an adapter.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

_SLOW_INPUTS_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("MEDTUNE_FUZZ_EXAMPLES", "25")),
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=20),
    suppress_health_check=_SLOW_INPUTS_OK,
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("MEDTUNE_FUZZ_EXAMPLES", "2000")),
    derandomize=False,
    database=None,
    deadline=timedelta(seconds=20),
    suppress_health_check=_SLOW_INPUTS_OK,
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
