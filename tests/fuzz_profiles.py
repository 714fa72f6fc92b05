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


def _register(name: str, examples: int, derandomize: bool) -> None:
    settings.register_profile(
        name,
        max_examples=int(os.environ.get("MEDTUNE_FUZZ_EXAMPLES", str(examples))),
        derandomize=derandomize,
        database=None,
        deadline=timedelta(seconds=20),
        suppress_health_check=_SLOW_INPUTS_OK,
        print_blob=True,
    )


_register("ci", 25, derandomize=True)  # make test: bounded and the same examples every run
_register("fuzz", 2000, derandomize=False)  # make fuzz

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
