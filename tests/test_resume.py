"""Checkpoints survive a kill: SIGKILL a real training process, resume, and land where an
uninterrupted run lands. Same config + seed → the same adapter bytes. Mechanics, not weights: the
runs train the tiny random model (``tiny_model_dir``), in 4-bit like the built-in default."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, tiny_overrides

from medtune.core.assets import sha256_file
from medtune.core.config import dump_config, load_config

# tiny model, but five `medtune train` processes (each imports torch/transformers/trl): a minute or two
pytestmark = pytest.mark.slow
FIXTURE = REPO / "tests" / "fixtures" / "qa_small.jsonl"


def config_file(tmp: Path, name: str, model: Path, extra: list[str]) -> Path:
    cfg = load_config(None, tiny_overrides(tmp, name) + [f"model.name={model}", f"data.sources=[{{kind: generic, path: {FIXTURE}}}]",
                                                         "train.report_to=[]"] + extra)
    path = tmp / f"{name}.yaml"
    dump_config(cfg, path)
    return path


def medtune(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "medtune", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            **kw)


def finish(proc: subprocess.Popen, timeout: int = 600) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]


def step_losses(run: Path) -> dict[int, float]:
    history = json.loads((run / "logs" / "history.json").read_text())
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir):
    # a checkpoint every 2 steps: the kill lands after the first one, with many steps still to go
    steps = 8
    extra = [f"train.max_steps={steps}", "train.save_steps=2", f"train.save_total_limit={steps}", "lora.dropout=0.1"]
    ref_cfg = config_file(tmp_path, "reference", tiny_model_dir, extra)
    finish(medtune("train", str(ref_cfg)))

    cfg = config_file(tmp_path, "killed", tiny_model_dir, extra)
    proc = medtune("train", str(cfg))
    ckpt = tmp_path / "killed" / "checkpoints" / "checkpoint-2"
    deadline = time.time() + 600
    while not (ckpt / "trainer_state.json").exists():
        assert proc.poll() is None, "training ended before the first checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "adapter" / "adapter_model.safetensors").exists(), "killed before the end"

    finish(medtune("train", str(cfg), "--resume"))
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    resumed_at = int(re.fullmatch(r".*checkpoint-(\d+)", manifest["train"]["resumed_from"]).group(1))
    assert 2 <= resumed_at < steps
    ref, resumed = step_losses(tmp_path / "reference"), step_losses(tmp_path / "killed")
    assert max(ref) == max(resumed) == steps
    after = [s for s in ref if s > resumed_at]
    assert after and all(abs(ref[s] - resumed[s]) < 1e-4 for s in after), (resumed_at, ref, resumed)


@pytest.mark.extended
def test_same_config_and_seed_give_the_same_adapter(tmp_path, tiny_model_dir):
    hashes = []
    for name in ("a", "b"):
        cfg = config_file(tmp_path, name, tiny_model_dir, ["train.max_steps=2", "lora.dropout=0.1"])
        finish(medtune("train", str(cfg)))
        hashes.append(sha256_file(tmp_path / name / "adapter" / "adapter_model.safetensors"))
    assert hashes[0] == hashes[1]
    other = config_file(tmp_path, "c", tiny_model_dir, ["train.max_steps=2", "lora.dropout=0.1", "train.seed=7"])
    finish(medtune("train", str(other)))
    assert sha256_file(tmp_path / "c" / "adapter" / "adapter_model.safetensors") != hashes[0]
