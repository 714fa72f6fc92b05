"""A real two-point sweep on the tiny model: one run per point, the comparison files, the best point."""

import csv
import json
import os

import pytest
from helpers import REPO, tiny_overrides

from medtune.core.config import ConfigError, load_config, point_config
from medtune.core.rundir import RunDir
from medtune.evaluate.metrics import rouge_items
from medtune.evaluate.report import answers_path
from medtune.training.sweep import headline_metrics, points, progress, run_sweep, summarise, summary_markdown

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


REFERENCES = [
    "Kidney stones are hard deposits of minerals and salts that form inside the kidneys.",
    "Drinking plenty of water helps prevent most kinds of kidney stones.",
    "Hepatitis C is a liver infection caused by a virus that spreads through contact with blood.",
    "Symptoms of celiac disease include diarrhea, bloating, gas and tiredness.",
    "Gallstones can block the bile ducts and cause sudden pain in the upper right abdomen.",
    "People with diabetes should check their feet every day for cuts and sores.",
    "Constipation means fewer than three bowel movements a week.",
    "An ultrasound can show whether the liver is enlarged.",
]


def _answers(run_dir, set_name, answers, ids=None):
    rows = [{"id": (ids or [f"q{i}" for i in range(len(answers))])[i], "question": "?", "reference": ref, "base": "", "finetuned": a}
            for i, (ref, a) in enumerate(zip(REFERENCES, answers))]
    path = answers_path(run_dir / "eval", set_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_one_seed_points_are_compared_on_the_same_answers(tmp_path):
    """With one seed there is no seed spread: a point is set against the best on the same questions' answers
    (paired bootstrap, recomputed from the answers files), for the held-out split's metrics and a set's."""
    metric = "sets.niddk (held-out source).results.rougeL"
    cfg = load_config(None, tiny_overrides(tmp_path) + [f"sweep={{grid: {{lora.r: [4, 8, 16]}}, metric: '{metric}'}}"])
    vague = ["It depends, please ask your doctor about it." for _ in REFERENCES]
    close = [*REFERENCES[:-1], vague[0]]  # one answer of eight worse: a difference the questions cannot tell from chance
    dirs = [tmp_path / f"p{i}" for i in range(3)]
    for d, answers in zip(dirs, [REFERENCES, vague, close]):
        _answers(d, "niddk (held-out source)", answers)
    means = [sum(r["rougeL"] for r in rouge_items(a, REFERENCES)) / len(REFERENCES) for a in (REFERENCES, vague, close)]
    beside = ["sets.niddk (held-out source).results.bertscore_f1", "sets.niddk (held-out source).degeneration.degenerate"]
    rows = [{"point": i, "seed": 42, "lora.r": r, "run_dir": str(d), metric: m, "rouge1": 0.5, beside[0]: 0.6, beside[1]: 0.0}
            for i, (r, d, m) in enumerate(zip([4, 8, 16], dirs, means))]
    summary = summarise(cfg, points(cfg), rows)
    assert headline_metrics(summary) == [metric, *beside], "the set's own BERTScore and degeneration beside the metric"
    assert summary["best"] == 0 and summary["points"][0]["vs_best"] is None
    vague_vs, close_vs = (summary["points"][i]["vs_best"] for i in (1, 2))
    assert vague_vs["beyond_noise"] is None, "one seed: no seed noise to compare with"
    assert vague_vs["answers"]["difference"] == pytest.approx(means[1] - means[0]) and vague_vs["answers"]["n"] == len(REFERENCES)
    assert vague_vs["answers"]["significant"] and vague_vs["answers"]["ci"][1] < 0, "every vague answer scores lower"
    assert close_vs["answers"]["difference"] == pytest.approx(means[2] - means[0]) and close_vs["answers"]["difference"] < 0
    assert not close_vs["answers"]["significant"] and close_vs["answers"]["ci"][1] == pytest.approx(0)
    md = summary_markdown(summary)
    assert "each point is compared with the best on the same 8 answers" in md and "1 of 2 other points differ significantly" in md
    assert md.count("paired over 8 answers") == 2 and md.count(" n.s.)") == 1
    headline, every = md.split("## Every metric")
    assert "rouge1" in every and "rouge1" not in headline and "bertscore_f1" in headline and "bertscore_f1" not in every

    # other questions (a different sample) or a metric that is not per answer: no paired comparison
    _answers(dirs[1], "niddk (held-out source)", vague, ids=[f"x{i}" for i in range(len(REFERENCES))])
    assert summarise(cfg, points(cfg), rows)["points"][1]["vs_best"].get("answers") is None
    by_loss = load_config(None, tiny_overrides(tmp_path) + ["sweep={grid: {lora.r: [4, 8, 16]}, metric: eval_loss}"])
    loss_rows = [{**r, "eval_loss": 1.0 + i} for i, r in enumerate(rows)]
    assert summarise(by_loss, points(by_loss), loss_rows)["points"][1]["vs_best"].get("answers") is None
    # the held-out split's answers.jsonl backs the bare metric name
    for d, answers in zip(dirs, [REFERENCES, vague, close]):
        _answers(d, None, answers)
    split = load_config(None, tiny_overrides(tmp_path) + ["sweep={grid: {lora.r: [4, 8, 16]}, metric: rougeL}"])
    split_rows = [{**r, "rougeL": m} for r, m in zip(rows, means)]
    assert summarise(split, points(split), split_rows)["points"][1]["vs_best"]["answers"]["significant"]


def test_a_finished_point_is_not_run_again(tmp_path):
    """`medtune sweep` again (after a kill): a point whose run finished with the same config is reused, one killed
    during its evaluation is only evaluated; one killed while training, or holding another config, runs again."""
    cfg = load_config(None, tiny_overrides(tmp_path) + ["sweep={grid: {train.learning_rate: [1.0e-4, 2.0e-4]}}"])
    first = point_config(cfg, points(cfg)[0], None, str(tmp_path / "points"), "p00")
    run = RunDir.create(first)
    assert progress(run, first) is None, "nothing written yet"
    run.update_manifest(seed=1)  # what a run killed while training leaves
    assert progress(run, first) is None
    (run.adapter).mkdir()
    (run.adapter / "adapter_model.safetensors").write_bytes(b"weights")
    run.update_manifest(train={"steps": 7}, adapter={"sha256": "x"})
    assert progress(run, first) == "trained", "killed during the evaluation"
    run.eval.mkdir()
    (run.eval / "report.json").write_text(json.dumps({"results": {"finetuned": {"rougeL": 0.3}}}))
    run.update_manifest(wall_seconds=12.0)
    assert progress(run, first) == "done"
    other = point_config(cfg, points(cfg)[1], None, str(tmp_path / "points"), "p00")
    assert progress(run, other) is None, "the same directory with another learning rate is run again"
    RunDir.create(first)  # a later run of the same point started over it (config.yaml rewritten), then was killed
    os.utime(run.manifest_path, ns=(run.config.stat().st_mtime_ns - 10**9,) * 2)
    assert progress(run, first) is None, "the manifest is older than the config: it belongs to an earlier run"


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
    adapters = {r["run_dir"]: (tmp_path / r["run_dir"] / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns for r in rows}
    killed = RunDir(tmp_path / rows[1]["run_dir"])  # as if killed during its evaluation: no report, no wall time
    (killed.eval / "report.json").unlink()
    manifest = killed.manifest()
    del manifest["wall_seconds"]
    killed.manifest_path.write_text(json.dumps(manifest))
    again = run_sweep(cfg)  # nothing is trained again; the second point is evaluated again; the same comparison
    assert again["best"] == summary["best"] and (killed.eval / "report.json").is_file() and "wall_seconds" in killed.manifest()
    assert adapters == {k: (tmp_path / k / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns for k in adapters}
