"""Multi-stage training on the real tiny model: stage 2 starts from stage 1's adapter (continue and
merge), replay draws the asked share of stage 1's mixture, and the stage table shows every stage."""

import json

import pytest
from helpers import REPO, tiny_overrides
from safetensors.torch import load_file

from medtune.core.config import ConfigError, load_config, stage_config
from medtune.core.rundir import RunDir
from medtune.data.records import read_jsonl
from medtune.training.stages import report_metrics, run_stages, stage_table

FIXTURE = REPO / "tests" / "fixtures" / "qa_small.jsonl"
STARTER = "{kind: builtin, path: starter, count: 12}"


def two_stages(tmp, name: str, start: str) -> list[str]:
    return tiny_overrides(tmp, name) + [
        "train.max_steps=1",
        "train.max_seq_length=64",
        "train.report_to=[]",
        "eval.compare_base=true",
        "eval.max_samples=1",
        "eval.max_new_tokens=4",
        "data.eval_max=2",
        "lora.dropout=0",
        "model.quantization=none",
        "train.learning_rate=1e-3",
        f"stages=[{{name: one, data: {{sources: [{STARTER}]}}}}, "
        f"{{name: two, start: {start}, data: {{sources: [{{kind: generic, path: {FIXTURE}, count: 6}}, "
        "{kind: replay, path: one, count: 3}]}, "
        "train: {learning_rate: 1.0e-3, max_seq_length: 40}}]",
    ]


def test_stage_configs_resolve_and_replay_points_at_the_earlier_stage(tmp_path):
    cfg = load_config(None, two_stages(tmp_path, "plan", "continue"))
    one, two = stage_config(cfg, 0), stage_config(cfg, 1)
    assert one.run_dir == tmp_path / "plan" / "one" and two.run_dir == tmp_path / "plan" / "two"
    assert two.train.learning_rate == 1e-3 and one.train.learning_rate == cfg.train.learning_rate
    assert two.data.sources[1].path == str(tmp_path / "plan" / "one")
    assert two.data.system_prompt == cfg.data.system_prompt, "sections merge key by key"
    with pytest.raises(ConfigError, match=r"stages\[0\] \(one\): replay of 'two'"):
        load_config(None, tiny_overrides(tmp_path) + ["stages=[{name: one, data: {sources: [{kind: replay, path: two}]}}, {name: two}]"])
    with pytest.raises(ConfigError, match=r"stages\[1\] \(b\): train.lr: unknown key"):
        load_config(None, tiny_overrides(tmp_path) + ["stages=[{name: a}, {name: b, train: {lr: 1}}]"])


@pytest.mark.slow
def test_two_stages_with_replay(tmp_path):
    """A real two-stage run ('continue'), then 'merge' built from the same stage 1."""
    import torch
    from peft import PeftModel

    from medtune.core.models import load_model
    from medtune.training.stages import Stage, start_from

    cfg = load_config(None, two_stages(tmp_path, "st", "continue"))
    table = run_stages(cfg)
    one, two = tmp_path / "st" / "one", tmp_path / "st" / "two"
    for stage in (one, two):
        for rel in ("config.yaml", "manifest.json", "data/train.jsonl", "adapter/adapter_model.safetensors", "eval/report.json"):
            assert (stage / rel).is_file(), stage / rel

    # replay: exactly the asked 3 records of stage 1's training mixture, all kept for training
    replayed = [r for r in read_jsonl(two / "data" / "train.jsonl") if r.meta.get("replay")]
    assert len(replayed) == 3 and {r.id for r in replayed} <= {r.id for r in read_jsonl(one / "data" / "train.jsonl")}
    card = json.loads((two / "data" / "data_card.json").read_text())
    assert [s["records_used"] for s in card["sources"] if s["kind"] == "replay"] == [3]

    # continue: stage 2 kept training stage 1's adapter on the same base
    two_cfg = load_config(two / "config.yaml")
    assert two_cfg.lora.init_adapter == str((one / "adapter").resolve())
    assert two_cfg.model.name == load_config(one / "config.yaml").model.name
    assert json.loads((two / "manifest.json").read_text())["train"]["init_adapter"] == two_cfg.lora.init_adapter
    first = load_file(one / "adapter" / "adapter_model.safetensors")
    second = load_file(two / "adapter" / "adapter_model.safetensors")
    lora_b = [k for k in first if "lora_B" in k]
    assert first.keys() == second.keys() and any(not first[k].equal(second[k]) for k in first)
    assert all(first[k].abs().sum() > 0 for k in lora_b), "stage 1 trained its adapter"

    # merge: stage 2's base is stage 1 merged into the de-quantized base, and computes what base + adapter computes
    stage_one = Stage("one", load_config(one / "config.yaml"), RunDir(one), "base")
    merge_cfg = load_config(None, two_stages(tmp_path, "st", "merge"))
    merged_cfg = start_from(stage_config(merge_cfg, 1), merge_cfg.stages[1], stage_one)
    merged = two / "merged_base"
    assert merged_cfg.model.name == str(merged.resolve()) and merged_cfg.lora.init_adapter is None, "a fresh adapter on the merged base"
    assert json.loads((merged / "medtune_source.json").read_text())["adapter"] == str((one / "adapter").resolve())
    ids = torch.tensor([[1, 504, 3458, 282, 253, 1345, 30]])
    with torch.no_grad():
        tuned = PeftModel.from_pretrained(load_model(_base_dir(), dtype="float32"), str(one / "adapter")).eval()(ids).logits
        plain = load_model(_base_dir(), dtype="float32").eval()(ids).logits
        merged_logits = load_model(str(merged), dtype="float32").eval()(ids).logits
    assert (merged_logits - tuned).abs().max() < 1e-3 < (merged_logits - plain).abs().max()

    # the table: base row, one row per stage, each stage's model scored on every earlier held-out split
    assert [r["stage"] for r in table["rows"]] == ["base", "one", "two"]
    rows = {r["stage"]: r["metrics"] for r in table["rows"]}
    assert {"loss on one held-out", "loss on two held-out"} <= set(rows["two"]) & set(rows["base"])
    assert "loss on one held-out" in rows["one"] and "eval_loss" in rows["one"]
    # stage one's held-out prompts (41-42 tokens) do not fit stage two's 40-token rows: scored at stage one's own length
    assert rows["two"]["loss on one held-out"] > 0
    assert all(f["metric"].startswith("loss on") for f in table["forgetting"]), "own-split metrics are not compared across stages"
    saved = json.loads((tmp_path / "st" / "stages.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(table["rows"]))
    md = (tmp_path / "st" / "stages.md").read_text()
    assert {"base", "one", "two"} <= {
        line.split("|")[1].strip() for line in md.splitlines() if line.startswith("|")
    } and "## Forgetting" in md


def _base_dir() -> str:
    from medtune.core.models import resolve

    return resolve("smollm2-135m-instruct").path


def test_stage_table_reads_any_metric_and_flags_forgetting(tmp_path):
    """MCQ accuracy from the evaluation report (report["mcq"][bench][model]) goes into the table, and a
    metric that drops after a later stage is listed as forgetting."""
    from medtune.training.stages import Stage

    cfg = load_config(None, tiny_overrides(tmp_path))
    reports = {
        "one": {
            "results": {"base": {"eval_loss": 2.0}, "finetuned": {"eval_loss": 1.5, "rougeL": 0.2}},
            "degeneration": {"base": {"ends_on_eos": 0.5}, "finetuned": {"ends_on_eos": 1.0}},
            "mcq": {"medqa": {"base": {"accuracy": 0.30}, "finetuned": {"accuracy": 0.45, "n": 8, "unparseable_rate": 0.5}}},
            "held_out_loss": {"one": 1.5},
        },
        "two": {
            "results": {"base": {"eval_loss": 1.9}, "finetuned": {"eval_loss": 1.2, "rougeL": 0.3}},
            "degeneration": {"base": {"ends_on_eos": 0.2}, "finetuned": {"ends_on_eos": 0.0}},
            "mcq": {"medqa": {"base": {"accuracy": 0.45}, "finetuned": {"accuracy": 0.35, "unparseable_rate": 0.25}}},
            "held_out_loss": {"one": 1.8, "two": 1.2},
        },
    }
    # sample sizes and the like are not metrics: no "mcq.medqa.n" column
    assert report_metrics(reports["one"]) == {"eval_loss": 1.5, "rougeL": 0.2, "degeneration.ends_on_eos": 1.0,
                                              "mcq.medqa.accuracy": 0.45, "mcq.medqa.unparseable_rate": 0.5}
    stages = [Stage(n, cfg, RunDir(tmp_path / n), s) for n, s in (("one", "base"), ("two", "continue"))]
    table = stage_table(stages, reports, base_losses={"one": 2.0, "two": 2.1})
    rows = {r["stage"]: r["metrics"] for r in table["rows"]}
    assert rows["base"]["mcq.medqa.accuracy"] == 0.30 and rows["two"]["mcq.medqa.accuracy"] == 0.35
    forgot = {f["metric"]: f for f in table["forgetting"]}
    # degeneration is measured on each stage's own held-out answers (a dialogue stage's are long, an MCQ stage's
    # one word): its drop from 1.0 to 0.0 compares different items, not forgetting; fewer unparseable MCQ answers
    # (0.5 -> 0.25) is a gain
    assert rows["two"]["degeneration.ends_on_eos"] == 0.0
    assert set(forgot) == {"mcq.medqa.accuracy", "loss on one held-out"}
    assert forgot["mcq.medqa.accuracy"]["best_stage"] == "one" and forgot["mcq.medqa.accuracy"]["change"] == pytest.approx(-0.10)
    assert forgot["loss on one held-out"]["change"] == pytest.approx(0.3)


@pytest.mark.slow
@pytest.mark.extended
def test_stages_and_sweeps_count_max_tokens_with_the_models_tokenizer_like_run(tmp_path, base_model_dir):
    """data.max_tokens is counted with the base model's tokenizer by `medtune run`, by every stage and by
    every sweep point alike (one pipeline): the same records survive, and they are the ones the real
    token counts keep, not the ones a characters / 4 estimate would keep."""
    from typer.testing import CliRunner

    from medtune.apps.cli import app
    from medtune.core.config import dump_config
    from medtune.core.models import load_tokenizer
    from medtune.data.clean import _full_text
    from medtune.data.sources import load_source
    from medtune.training.sweep import run_sweep

    limit = 36
    tok = load_tokenizer(str(base_model_dir))
    records = load_source("generic", str(FIXTURE))
    tokens = {r.id: len(tok(_full_text(r), add_special_tokens=False)["input_ids"]) for r in records}
    estimate = {r.id: len(_full_text(r)) // 4 for r in records}
    expected = {i for i, n in tokens.items() if n <= limit}
    assert expected != {i for i, n in estimate.items() if n <= limit}, "the fixture must tell the two counts apart"
    assert any(tokens[i] <= limit < estimate[i] for i in tokens), "a record the estimate would drop but the tokenizer keeps"

    common = tiny_overrides(tmp_path) + [
        f"data.sources=[{{kind: generic, path: {FIXTURE}}}]",
        f"data.max_tokens={limit}",
        "data.eval_max=1",
        "model.quantization=none",
        "train.report_to=[]",
        "train.max_steps=1",
        "train.max_seq_length=64",
        "eval.compare_base=false",
        "eval.max_samples=1",
        "eval.max_new_tokens=2",
    ]

    def kept(run_dir) -> set[str]:
        card = json.loads((run_dir / "data" / "data_card.json").read_text())
        assert card["token_counts"] == str(base_model_dir), "counted with the model's tokenizer"
        return {r.id for name in ("train.jsonl", "eval.jsonl") for r in read_jsonl(run_dir / "data" / name)}

    config = tmp_path / "run.yaml"
    dump_config(load_config(None, [*common, "name=single"]), config)
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    assert kept(tmp_path / "single") == expected

    run_stages(load_config(None, [*common, "name=staged", "stages=[{name: only}]"]))
    assert kept(tmp_path / "staged" / "only") == expected

    run_sweep(load_config(None, [*common, "name=swept", "sweep={grid: {train.learning_rate: [1.0e-4]}}"]))
    assert kept(tmp_path / "swept" / "points" / "p00") == expected
