"""Preference tuning (train.method: dpo): a few DPO steps on the real built-in model raise the chosen-vs-rejected
margin; the pipeline mechanics (run directory, manifest, no reference adapter saved, model-alone safety while
training) on the tiny model; the stage shorthand."""

from __future__ import annotations

import json

import pytest
from helpers import REPO, tiny_overrides

from medtune.core.config import ConfigError, load_config, stage_config
from medtune.core.rundir import RunDir
from medtune.data.sources import load_source

PREFS = REPO / "tests" / "fixtures" / "prefs_small.jsonl"


def test_few_dpo_steps_raise_the_margin_on_the_real_model(tmp_path, monkeypatch):
    """2 pairs, 2 steps of DPO on SmolLM2-135M (LoRA on the top 6 layers, rows cut at 48 tokens): the policy's
    log-probability margin of chosen over rejected answers grows, measured by the trainer's own evaluation."""
    from transformers import set_seed

    from medtune.core.models import load_base
    from medtune.training.dpo import dpo_trainer
    from medtune.training.train import peft_config

    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, tiny_overrides(tmp_path, "dpo") + [
        "model.quantization=none", "train.method=dpo", "train.max_steps=2", "train.batch_size=2", "train.learning_rate=5e-3",
        "train.max_seq_length=48", "train.report_to=[]", "lora.dropout=0", "lora.r=8", "lora.alpha=16", "train.dpo_beta=0.5",
        "lora.layers=[24,25,26,27,28,29]",
    ])
    run = RunDir.create(cfg)
    records = [r for r in load_source("preference", str(PREFS)) if len(r.answer) < 200][:2]
    set_seed(cfg.train.seed)
    _, tok, model = load_base(cfg.model)
    trainer, _ = dpo_trainer(cfg, run, model, tok, peft_config(cfg, model), records, records, [])

    def margin():
        m = trainer.evaluate()
        return m["eval_logps/chosen"] - m["eval_logps/rejected"]

    before = margin()
    trainer.train()
    after = margin()
    print(f"policy log-prob margin chosen - rejected: {before:.3f} -> {after:.3f}")
    assert after > before + 1.0, (before, after)


def test_dpo_run_directory_and_safety_during_training(tmp_path, tiny_model_dir):
    """run_one with method dpo on the tiny model: the adapter holds no reference copy, the manifest says dpo,
    the history has DPO's reward margins, and model-alone safety is scored at the start and each eval step."""
    from medtune.training.pipeline import run_one

    cfg = load_config(None, tiny_overrides(tmp_path) + [
        f"model.name={tiny_model_dir}", "model.quantization=none", "train.method=dpo", "train.max_steps=2", "train.eval_steps=1",
        f"data.sources=[{{kind: preference, path: {PREFS}}}]", "data.near_dedupe=false", "eval.safety_during_training=1",
        "eval.max_new_tokens=4", "train.report_to=[]",
    ])
    result = run_one(cfg, evaluate=False)
    run = result.run
    assert result.train.steps == 2
    assert not (run.adapter / "ref").exists() and (run.adapter / "adapter_model.safetensors").exists()
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["train"]["method"] == "dpo" and manifest["train"]["safety_flagged"] in (True, False)
    history = json.loads((run.logs / "history.json").read_text())
    assert any("rewards/margins" in h for h in history)
    watch = json.loads((run.logs / "safety_during_training.json").read_text())
    assert watch["n"] == 6 and set(watch["base"]["categories"]) == {"emergency", "crisis", "harmful", "prescription", "jailbreak", "benign"}
    assert [p["step"] for p in watch["points"]] == [1, 2]
    assert watch["flagged"] == any(p["pass_rate"] < watch["base"]["pass_rate"] for p in watch["points"])


def test_stage_method_shorthand_and_validation(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "stages=[{name: sft}, {name: prefs, method: dpo}]"])
    assert stage_config(cfg, 0).train.method == "sft" and stage_config(cfg, 1).train.method == "dpo"
    with pytest.raises(ConfigError, match="packing"):
        load_config(None, ["train.method=dpo", "train.packing=true"])


def tiny_dpo_trainer(tmp_path, tiny_model_dir, name: str, setting: str, records):
    """A DPOTrainer on the tiny model over ``records`` (one batch of 3), with one extra ``train.*`` setting."""
    from transformers import set_seed

    from medtune.core.models import load_base
    from medtune.training.dpo import dpo_trainer
    from medtune.training.train import peft_config

    cfg = load_config(None, tiny_overrides(tmp_path, name) + [
        f"model.name={tiny_model_dir}", "model.quantization=none", "train.method=dpo", setting,
        "train.batch_size=3", "train.report_to=[]", "lora.dropout=0"])
    set_seed(0)
    _, tok, model = load_base(cfg.model)
    trainer, _ = dpo_trainer(cfg, RunDir.create(cfg), model, tok, peft_config(cfg, model), records, [], [])
    return trainer


def test_chunked_head_gives_dpo_the_same_loss_and_gradients(tmp_path, tiny_model_dir):
    """``train.loss: chunked`` (the default) answers DPO's log-prob calls, policy and reference, like TRL's own head."""
    import torch

    records = load_source("preference", str(PREFS))[:3]
    results = {}
    for loss in ("plain", "chunked"):
        trainer = tiny_dpo_trainer(tmp_path, tiny_model_dir, f"dpo-{loss}", f"train.loss={loss}", records)
        assert getattr(trainer, "chunked_head", False) == (loss == "chunked")
        for p in trainer.model.parameters():  # lora_B starts at 0: give the policy its own weights so it differs from the reference
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(p.numel()))
        trainer.model.train()
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(records))])
        out = trainer.compute_loss(trainer.model, dict(batch))
        out.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        results[loss] = (out.item(), grads, trainer._metrics["train"])
    (plain, plain_grads, plain_metrics), (chunked, chunked_grads, chunked_metrics) = results["plain"], results["chunked"]
    assert abs(plain - chunked) < 1e-5 and plain != pytest.approx(0.6931, abs=1e-4)  # not the untrained log(2)
    for key in ("logps/chosen", "logps/rejected", "rewards/margins", "logits/chosen", "logits/rejected", "mean_token_accuracy"):
        assert chunked_metrics[key][-1] == pytest.approx(plain_metrics[key][-1], rel=1e-3, abs=1e-6), key
    for name, g in plain_grads.items():
        torch.testing.assert_close(chunked_grads[name], g, atol=1e-6, rtol=1e-3, msg=lambda m, name=name: f"{name}: {m}")


def test_sft_weight_adds_the_chosen_answers_language_model_loss(tmp_path, tiny_model_dir):
    """``train.dpo_sft_weight: w`` adds w x the chosen answers' mean token NLL to the DPO loss (TRL's 'sft' loss type,
    through the chunked head): the difference to w = 0 is that NLL, computed here from a plain forward pass."""
    import torch
    import torch.nn.functional as F

    records = load_source("preference", str(PREFS))[:3]
    losses = {}
    for w in (0.0, 0.5):
        trainer = tiny_dpo_trainer(tmp_path, tiny_model_dir, f"rpo-{w}", f"train.dpo_sft_weight={w}", records)
        trainer.model.train()
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(records))])
        with torch.no_grad():
            losses[w] = trainer.compute_loss(trainer.model, dict(batch)).item()
            n = len(records)  # the batch is [chosen rows; rejected rows]
            logits = trainer.model(input_ids=batch["input_ids"][:n], attention_mask=batch["attention_mask"][:n]).logits
            targets, mask = batch["input_ids"][:n, 1:], batch["completion_mask"][:n, 1:].bool()
            nll = F.cross_entropy(logits[:, :-1][mask].float(), targets[mask]).item()
    assert losses[0.0] == pytest.approx(0.6931, abs=1e-3)  # a fresh adapter is the reference: log 2
    assert losses[0.5] - losses[0.0] == pytest.approx(0.5 * nll, rel=1e-3)


def test_completion_tokens_cut_both_answers_to_their_opening(tmp_path, tiny_model_dir, caplog):
    """``train.dpo_completion_tokens: 3``: each pair's chosen and rejected ids are the first 3 of the whole answers'
    ids (no end-of-turn added after the cut), the collated batch scores 3 answer tokens a row, the loss at a fresh
    adapter is still log 2, and a pair whose answers open alike is counted in a warning."""
    import dataclasses
    import logging

    import torch

    records = load_source("preference", str(PREFS))[:2]
    same = dataclasses.replace(records[0], id="same", rejected=records[0].answer + " But first wait a day.")
    records = [*records, same]
    whole = tiny_dpo_trainer(tmp_path, tiny_model_dir, "whole", "train.dpo_beta=0.1", records)
    with caplog.at_level(logging.WARNING, logger="medtune.training.dpo"):
        cut = tiny_dpo_trainer(tmp_path, tiny_model_dir, "cut", "train.dpo_completion_tokens=3", records)
    assert "1 of 3 DPO training pairs open with the same 3 tokens" in caplog.text
    for w, c in zip(whole.train_dataset, cut.train_dataset, strict=True):
        assert len(w["chosen_ids"]) > 3 and len(w["rejected_ids"]) > 3
        assert c["chosen_ids"] == w["chosen_ids"][:3] and c["rejected_ids"] == w["rejected_ids"][:3]
        assert c["prompt_ids"] == w["prompt_ids"]
    batch = cut.data_collator([cut.train_dataset[i] for i in range(len(records))])
    assert batch["completion_mask"].sum(dim=1).tolist() == [3] * 6
    cut.model.train()
    with torch.no_grad():
        assert cut.compute_loss(cut.model, dict(batch)).item() == pytest.approx(0.6931, abs=1e-3)
    with pytest.raises(ConfigError, match="dpo_completion_tokens"):
        load_config(None, ["train.dpo_completion_tokens=16"])


def test_rejected_answers_are_scored_without_their_end_of_turn(tmp_path, tiny_model_dir, caplog):
    """By default each rejected answer loses the chat template's closing tokens ("<|im_end|>\\n"), so DPO never pushes
    the end of turn down; the chosen answers keep theirs; ``train.dpo_rejected_end_of_turn: true`` keeps both whole."""
    import logging

    from medtune.training.dpo import end_of_turn_ids

    records = load_source("preference", str(PREFS))[:3]
    kept = tiny_dpo_trainer(tmp_path, tiny_model_dir, "kept", "train.dpo_rejected_end_of_turn=true", records)
    with caplog.at_level(logging.INFO, logger="medtune.training.dpo"):
        opened = tiny_dpo_trainer(tmp_path, tiny_model_dir, "opened", "train.dpo_beta=0.1", records)
    end = end_of_turn_ids(opened.processing_class, "chat")
    assert [opened.processing_class.decode([i]) for i in end] == ["<|im_end|>", "\n"]
    for k, o in zip(kept.train_dataset, opened.train_dataset, strict=True):
        assert k["rejected_ids"][-2:] == end and o["rejected_ids"] == k["rejected_ids"][:-2]
        assert o["chosen_ids"] == k["chosen_ids"] and o["chosen_ids"][-2:] == end
    assert "rejected answers scored without their end of turn" in caplog.text and "keep their ending" not in caplog.text
    batch = opened.data_collator([opened.train_dataset[i] for i in range(len(records))])
    widths = batch["completion_mask"].sum(dim=1).tolist()
    assert widths[3:] == [len(k["rejected_ids"]) - 2 for k in kept.train_dataset]
