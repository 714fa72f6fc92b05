"""A real two-point sweep on the tiny model: one run per point, the comparison files, the best point."""

import csv
import json

import pytest
from helpers import REPO, tiny_overrides

from medtune.core.config import ConfigError, load_config
from medtune.training.sweep import points, run_sweep, summarise, summary_markdown

FIXTURE = REPO / "tests" / "fixtures" / "qa_small.jsonl"


def test_points_grid_and_seeded_random_sample(tmp_path):
    grid = "sweep={grid: {train.learning_rate: [1.0e-4, 2.0e-4, 3.0e-4], lora.r: [4, 8]}, mode: %s, samples: 3, seed: %d}"
    cfg = load_config(None, tiny_overrides(tmp_path) + [grid % ("grid", 0)])
    assert len(points(cfg)) == 6 and points(cfg)[1] == {"train.learning_rate": 1e-4, "lora.r": 8}
    first = points(load_config(None, tiny_overrides(tmp_path) + [grid % ("random", 0)]))
    again = points(load_config(None, tiny_overrides(tmp_path) + [grid % ("random", 0)]))
    assert len(first) == 3 and first == again and all(p in points(cfg) for p in first)
    with pytest.raises(ConfigError, match=r"sweep.grid.lora.rank"):
        load_config(None, tiny_overrides(tmp_path) + ["sweep={grid: {lora.rank: [4]}}"])


def test_summary_mean_ci_and_direction(tmp_path):
    cfg = load_config(None, tiny_overrides(tmp_path) + ["sweep={grid: {lora.r: [4, 8]}, seeds: [1, 2], metric: rougeL}"])
    rows = [
        {"point": 0, "seed": 1, "lora.r": 4, "eval_loss": 2.0, "rougeL": 0.10},
        {"point": 0, "seed": 2, "lora.r": 4, "eval_loss": 2.2, "rougeL": 0.20},
        {"point": 1, "seed": 1, "lora.r": 8, "eval_loss": 1.0, "rougeL": 0.05},
        {"point": 1, "seed": 2, "lora.r": 8, "eval_loss": 1.2, "rougeL": 0.07},
    ]
    summary = summarise(cfg, points(cfg), rows)
    assert summary["best"] == 0 and not summary["lower_is_better"], "rougeL: higher is better"
    cell = summary["points"][0]["metrics"]["rougeL"]
    assert cell["mean"] == pytest.approx(0.15) and cell["n"] == 2
    assert cell["ci95"] == pytest.approx(12.706 * 0.0707107 / 2**0.5, rel=1e-3)  # t(0.975, 1) · sd / √n
    # point 1 against the best: 0.06 - 0.15 = -0.09; pooled seed sd sqrt((0.0707^2 + 0.0141^2) / 2) = 0.051 → within 2 sd
    vs = summary["points"][1]["vs_best"]
    assert vs["difference"] == pytest.approx(-0.09) and vs["sd"] == pytest.approx(0.05099, rel=1e-3) and vs["beyond_noise"] is False
    assert summary["points"][0]["vs_best"] is None
    by_loss = load_config(None, tiny_overrides(tmp_path) + ["sweep={grid: {lora.r: [4, 8]}, seeds: [1, 2]}"])
    loss_summary = summarise(by_loss, points(by_loss), rows)
    assert loss_summary["best"] == 1, "eval_loss: lower is better"
    vs = loss_summary["points"][0]["vs_best"]  # 2.1 - 1.1 = 1.0 against a seed sd of 0.141: beyond the noise
    assert vs["difference"] == pytest.approx(1.0) and vs["beyond_noise"] is True
    md = summary_markdown(loss_summary)
    assert "+1 (beyond seed noise)" in md and "1 of 1 other points differ from the best" in md


@pytest.mark.slow
@pytest.mark.extended
def test_two_point_sweep_writes_the_table_and_picks_the_best(tmp_path):
    cfg = load_config(
        None,
        tiny_overrides(tmp_path, "sw")
        + [
            f"data.sources=[{{kind: generic, path: {FIXTURE}, count: 12}}]",
            "model.quantization=none",
            "train.report_to=[]",
            "train.max_steps=1",
            "train.max_seq_length=64",
            "eval.compare_base=false",
            "eval.max_samples=1",
            "eval.max_new_tokens=4",
            "sweep={grid: {train.learning_rate: [1.0e-5, 3.0e-3]}, metric: eval_loss}",
        ],
    )
    summary = run_sweep(cfg)
    out = tmp_path / "sw"
    for name in ("sweep.csv", "sweep.md", "sweep.json", "sweep.png", "best_config.yaml"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [float(r["train.learning_rate"]) for r in rows] == [1e-5, 3e-3]
    assert {"train_loss", "eval_loss", "rougeL", "bleu", "run_dir"} <= set(rows[0])
    losses = [float(r["eval_loss"]) for r in rows]
    assert summary["best"] == losses.index(min(losses))
    for r in rows:  # every point is an ordinary, self-describing run directory; data prepared once
        assert (tmp_path / r["run_dir"] / "adapter" / "adapter_model.safetensors").is_file()
        assert (tmp_path / r["run_dir"] / "data" / "train.jsonl").read_text() == (
            out / "points" / "p00" / "data" / "train.jsonl"
        ).read_text()
    best = load_config(out / "best_config.yaml")
    assert best.sweep is None and best.train.learning_rate == [1e-5, 3e-3][summary["best"]]
    md = (out / "sweep.md").read_text()
    assert "(best)" in md and "learning_rate=" in md
    assert json.loads((out / "sweep.json").read_text())["summary"]["best"] == summary["best"]
