"""Seed variance (training/seeds.py): N seeds through the sweep machinery, and whether the gain exceeds their spread."""

import json

import pytest
from helpers import REPO, tiny_overrides

from medtune.core.config import load_config
from medtune.training.seeds import run_seeds, seed_list, spread


def _report(base, tuned):
    return {"results": {"base": {"rougeL": base}, "finetuned": {"rougeL": tuned}},
            "differences": {"rougeL": {"difference": tuned - base}}}


def test_gain_exceeds_spread_only_when_larger_than_the_seed_noise():
    steady = spread([_report(0.10, t) for t in (0.20, 0.21, 0.19)])["held-out"][0]
    assert steady["exceeds_spread"] and steady["gain"] == pytest.approx(0.10) and steady["gain_ci"][0] > 0
    noisy = spread([_report(0.10, t) for t in (0.05, 0.25, 0.12)])["held-out"][0]
    assert not noisy["exceeds_spread"] and noisy["tuned_sd"] == pytest.approx(0.1015, abs=1e-4)


def test_run_seeds_trains_each_seed_and_writes_the_table(tmp_path, tiny_model_dir):
    qa = REPO / "tests" / "fixtures" / "qa_small.jsonl"
    cfg = load_config(None, tiny_overrides(tmp_path) + [
        f"model.name={tiny_model_dir}", f"data.sources=[{{kind: generic, path: {qa}}}]", "train.max_steps=1", "eval.max_samples=2",
        "eval.max_new_tokens=4", "eval.bertscore_model=''", "eval.bootstrap_samples=50", "train.seeds=[3, 4]"])
    assert seed_list(cfg) == [3, 4] and seed_list(cfg, 3) == [42, 43, 44]
    out = run_seeds(cfg, seed_list(cfg))
    runs = json.loads((cfg.run_dir / "sweep.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [3, 4]
    rows = {r["metric"]: r for r in out["sets"]["held-out"]}
    assert {"rougeL", "bleu", "eval_loss", "degenerate (share)"} <= set(rows) and rows["eval_loss"]["n"] == 2
    assert rows["eval_loss"]["tuned_sd"] > 0  # the two seeds trained differently
    assert "exceeds seed spread" in (cfg.run_dir / "seeds.md").read_text()
