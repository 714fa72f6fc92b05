"""ROUGE-L of generated answers at each evaluation during training (training/generation_metrics.py), on the tiny model."""

import json

import pytest
from helpers import REPO, tiny_overrides

from medtune.core.config import ConfigError, load_config
from medtune.core.rundir import RunDir
from medtune.data import prepare as P
from medtune.training.train import train


def test_rougeL_is_logged_at_each_evaluation_and_picks_the_best_checkpoint(tmp_path, tiny_model_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    qa = REPO / "tests" / "fixtures" / "qa_small.jsonl"
    cfg = load_config(None, tiny_overrides(tmp_path) + [
        f"model.name={tiny_model_dir}", f"data.sources=[{{kind: generic, path: {qa}}}]", "train.max_steps=4", "train.eval_steps=2",
        "train.keep_best=true", "train.best_metric=eval_rougeL", "train.eval_generate=2", "train.eval_generate_tokens=6"])
    run = RunDir.create(cfg)
    P.write(P.prepare(cfg.data), run.data)
    train(cfg, run)
    history = json.loads((run.logs / "history.json").read_text())
    rouge = [(h["step"], h["eval_rougeL"]) for h in history if "eval_rougeL" in h]
    assert [step for step, _ in rouge] == [2, 4] and all(0 <= v <= 1 for _, v in rouge)
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["train"]["best_metric"] == max(v for _, v in rouge)
    events = EventAccumulator(str(next((run.logs / "tensorboard").rglob("events.*")).parent))
    events.Reload()
    assert "eval/rougeL" in events.Tags()["scalars"]
    with pytest.raises(ConfigError, match="needs eval_generate"):
        load_config(None, ["train.eval_steps=2", "train.keep_best=true", "train.best_metric=eval_rougeL"])
