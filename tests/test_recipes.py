"""Every recipe config loads and validates; every GPU variant passes `medtune train --dry-run` here
(offline: the Hub model and data are named, the memory estimate still comes out)."""

import json

import pytest
from helpers import REPO, SHARED_DATA
from typer.testing import CliRunner

from medtune.apps.cli import app
from medtune.core.config import load_config
from medtune.training.plan import KNOWN_SHAPES, plan, shape_from_config, shape_from_count

RECIPES = REPO / "configs" / "recipes"
SEEDS = ("chatdoctor_qlora", "dmt_two_stage", "reasoning_cot", "sweep_tinyllama", "medibot", "safety", "grounded")


def test_every_seed_has_a_gpu_and_a_cpu_variant():
    names = {p.name for p in RECIPES.glob("*.yaml")}
    for seed in SEEDS:
        assert {f"{seed}.yaml", f"{seed}.cpu.yaml"} <= names
        gpu, cpu = load_config(RECIPES / f"{seed}.yaml"), load_config(RECIPES / f"{seed}.cpu.yaml")
        assert gpu.model.name in KNOWN_SHAPES and "/" in gpu.model.name, "GPU variants name the seed's real Hub model"
        assert cpu.model.name == "smollm2-135m-instruct"
        assert (gpu.sweep is None) == (cpu.sweep is None) and len(gpu.stages) == len(cpu.stages)


def test_recipe_hyperparameters():
    dmt = load_config(RECIPES / "dmt_two_stage.yaml")
    assert (dmt.model.name, dmt.model.quantization, dmt.lora.r, dmt.lora.alpha, dmt.lora.use_rslora, dmt.lora.target_modules,
            dmt.train.learning_rate) == ("meta-llama/Llama-3.1-8B-Instruct", "4bit", 16, 16, True, "all-linear", 3e-4)
    assert [s.name for s in dmt.stages] == ["knowledge", "dialogue"]
    kinds = [src["kind"] for src in dmt.stages[0].data["sources"]]
    assert kinds == ["medqa", "medmcqa", "pubmedqa"]
    replay = [src for src in dmt.stages[1].data["sources"] if src["kind"] == "replay"]
    assert replay == [{"kind": "replay", "path": "knowledge", "fraction": 0.1}]
    medibot = load_config(RECIPES / "medibot.yaml")
    assert (
        medibot.data.template,
        medibot.lora.r,
        medibot.lora.alpha,
        medibot.lora.dropout,
        medibot.train.lr_scheduler,
        medibot.train.epochs,
        medibot.train.eval_strategy,
        medibot.train.keep_best,
    ) == ("alpaca", 16, 32, 0.05, "cosine", 3, "epoch", True)
    chatdoctor = load_config(RECIPES / "chatdoctor_qlora.yaml")
    assert chatdoctor.model.name == "Qwen/Qwen2.5-0.5B-Instruct" and chatdoctor.model.quantization == "4bit"
    assert chatdoctor.data.sources[0].path == "lavita/ChatDoctor-HealthCareMagic-100k" and chatdoctor.eval.compare_base
    assert load_config(RECIPES / "reasoning_cot.cpu.yaml").data.template == "reasoning"
    safety = load_config(RECIPES / "safety.cpu.yaml")
    assert [(s.name, s.method) for s in safety.stages] == [("sft", None), ("dpo", "dpo")]
    assert [src["path"] for src in safety.stages[1].data["sources"]] == ["safety_pairs"] and safety.stages[1].start == "continue"
    grounded = load_config(RECIPES / "grounded.cpu.yaml")
    assert grounded.data.template == "rag" and grounded.retrieval.sources[0].kind == "medquad"
    sweep = load_config(RECIPES / "sweep_tinyllama.yaml").sweep
    assert set(sweep.grid) == {"train.learning_rate", "lora.r", "train.batch_size", "train.epochs"}
    quality = load_config(REPO / "configs" / "quality.yaml")  # the held-out source is never trained on, and is in the index
    held_out = "medquad/5_NIDDK_QA"
    assert not any(held_out in src.path for src in quality.data.sources) and quality.data.holdout_source is None
    assert [s.path.endswith(held_out) for s in quality.eval.sets] == [True] and quality.eval.grounded
    assert any(src.path.endswith(held_out) for src in quality.retrieval.sources) and quality.data.template == "rag"


@pytest.mark.parametrize("seed", SEEDS)
def test_gpu_variant_dry_run(seed, monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, ["train", str(RECIPES / f"{seed}.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "memory estimate" in result.output and "dry run" in result.output
    p = plan(load_config(RECIPES / f"{seed}.yaml"))
    for one in p.get("stages", [p]):
        model = one["model"]
        assert model["status"] in ("resolved", "unresolved")
        if model["status"] == "unresolved":  # offline here: says so, and says where the shape came from
            assert "Hugging Face Hub" in model["error"] and "KNOWN_SHAPES" in model["shape_source"]
        mem = one["memory"]
        assert mem["dtype"] == "bfloat16" and 0 < mem["weights"] < mem["total_gib"]
        assert mem["lora_parameter_count"] > 0


def test_dmt_dry_run_estimates_replay_from_stage_one():
    p = plan(load_config(RECIPES / "dmt_two_stage.yaml"))
    first, second = p["stages"]
    replay = [s for s in second["data"]["sources"] if s["kind"] == "replay"][0]
    assert replay["expected"] == round(0.1 * first["data"]["train_records_estimate"])
    assert second["start"] == "continue" and p["peak_total_gib"] >= first["memory"]["total_gib"]


def test_cpu_variant_dry_run_measures_real_tokens(monkeypatch):
    if not SHARED_DATA.exists():
        pytest.skip("real data not available")
    monkeypatch.chdir(REPO)
    p = plan(load_config(RECIPES / "chatdoctor_qlora.cpu.yaml"))
    assert p["model"]["status"] == "resolved" and p["model"]["shape_source"] == "config.json"
    assert p["data"]["sources"][0]["records"] == 5452 and p["data"]["sources"][0]["expected"] == 120
    assert p["data"]["tokens_measured_by"].startswith("tokenizer") and p["data"]["tokens"]["max"] > 0
    assert p["optimizer_steps"] == 8 and p["memory"]["adapted_layers"] == 6


def test_parameter_counts_match_the_real_model(base_model_dir):
    """The shape read from config.json counts the built-in model's real parameters; a size in a model id
    gives a shape of about that size."""
    from safetensors import safe_open

    with safe_open(str(base_model_dir / "model.safetensors"), "pt") as f:
        real = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    shape = shape_from_config(json.loads((base_model_dir / "config.json").read_text()))
    assert abs(shape.parameters()["total"] - real) / real < 0.01
    for name, size in (("org/Some-7B-chat", 7e9), ("org/thing-1.1B", 1.1e9), ("org/tiny-135M", 135e6)):
        assert abs(shape_from_count(name).parameters()["total"] - size) / size < 0.2, name


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_eval_each_epoch_and_keep_best_reach_the_trainer(tmp_path):
    from medtune.core.config import ConfigError
    from medtune.core.rundir import RunDir
    from medtune.training.train import check_trackers, sft_config

    cfg = load_config(RECIPES / "medibot.cpu.yaml", [f"output_dir={tmp_path}"])
    args = sft_config(cfg, RunDir(cfg.run_dir), has_eval=True)
    assert (args.eval_strategy, args.save_strategy, args.load_best_model_at_end, args.metric_for_best_model) == (
        "epoch",
        "epoch",
        True,
        "eval_loss",
    )
    assert args.greater_is_better is False
    steps = load_config(None, ["train.eval_steps=4", "train.keep_best=true", "train.best_metric=eval_mean_token_accuracy"])
    args = sft_config(steps, RunDir(tmp_path / "s"), has_eval=True)
    assert (args.eval_strategy, args.save_strategy, args.save_steps, args.greater_is_better) == ("steps", "steps", 4, True)
    assert sft_config(load_config(None), RunDir(tmp_path / "d"), has_eval=True).eval_strategy == "no"
    with pytest.raises(ConfigError, match="keep_best needs evaluation"):
        load_config(None, ["train.keep_best=true"])
    with pytest.raises(ConfigError, match=r"train.report_to: .*unknown tracker 'comet'"):
        load_config(None, ["train.report_to=[tensorboard, comet]"])
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        with pytest.raises(ModuleNotFoundError, match="pip install mlflow"):
            check_trackers(["tensorboard", "mlflow"])
