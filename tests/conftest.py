"""Shared fixtures: the real built-in model (SmolLM2-135M from its PyPI GGUF), tiny configs, CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """The built-in model converted to safetensors (cached across sessions)."""
    from medtune.core.models import resolve

    return Path(resolve("smollm2-135m-instruct").path)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, base_model_dir):
    """One real tiny QLoRA run (prepare → train → evaluate), shared by tests that inspect it."""
    from medtune.core.config import load_config
    from medtune.training.pipeline import run_one

    tmp = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, tiny_overrides(tmp) + ["data.sources=[{kind: generic, path: %s}]" % (REPO / "tests/fixtures/qa_small.jsonl")])
    result = run_one(cfg)
    return cfg, result.run, result.train, result.report


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path
