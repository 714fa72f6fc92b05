"""Plain helpers shared by the test modules (``from helpers import REPO, tiny_overrides``). Fixtures
live in conftest.py; this is an ordinary module, so no test imports conftest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))


def tiny_overrides(tmp: Path, name: str = "tiny") -> list[str]:
    """A run small enough for a unit test: a handful of records, short rows, a few steps."""
    return [
        f"output_dir={tmp}",
        f"name={name}",
        "data.eval_max=4",
        "data.eval_fraction=0.2",
        "data.system_prompt=You are a careful medical assistant.",
        "train.max_steps=3",
        "train.batch_size=2",
        "train.max_seq_length=96",
        "train.logging_steps=1",
        "lora.r=4",
        "lora.alpha=8",
        "eval.max_samples=2",
        "eval.base_precision=full",
        "eval.max_new_tokens=8",
        "generation.max_new_tokens=8",
    ]


def shared(*parts: str) -> Path:
    """A file of the real data beside the repository (../shared/data), or skip the test without it."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


class LiveServer:
    """``medtune serve`` in a subprocess on a free loopback port (see the ``live_server`` fixture)."""

    def __init__(self, proc, port: int, key: str, log: Path):
        self.proc, self.port, self.key, self.log = proc, port, key, log
        self.url = f"http://127.0.0.1:{port}"
        self.auth = {"Authorization": f"Bearer {key}"}

    def health(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/health", timeout=10).json()

    def wait_idle(self, timeout: float = 30) -> dict:
        """``/health`` once no worker is busy and nobody waits (or the last one seen at the deadline)."""
        import time

        deadline = time.time() + timeout
        while (h := self.health())["pending"] and time.time() < deadline:
            time.sleep(0.05)
        return h
