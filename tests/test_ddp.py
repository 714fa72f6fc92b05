"""`medtune train` under `accelerate launch`: two real CPU processes (DDP, gloo) on the built-in model.

Two processes × batch 2 must follow the same loss curve as one process × batch 4: the trainer's
sampler hands global batch k the same four examples in both runs (rank r takes the per-device
batches r, r+2, ...), the loss is averaged over the completion tokens of all ranks, and DDP
all-reduces the gradients. Dropout is off, so the only differences are float summation orders.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, tiny_overrides
from safetensors.torch import load_file

from medtune.core.config import dump_config, load_config

FIXTURE = REPO / "tests" / "fixtures" / "qa_small.jsonl"
LOSS_TOLERANCE = 1e-4
"""Absolute; measured differences are ~1e-6 (fp32 sums in another order)."""


def config_file(tmp: Path, name: str, batch_size: int) -> Path:
    cfg = load_config(None, tiny_overrides(tmp, name) + [
        f"data.sources=[{{kind: generic, path: {FIXTURE}}}]", "train.report_to=[]", "lora.dropout=0",
        "train.max_steps=2", f"train.batch_size={batch_size}", "train.max_seq_length=64", "lora.layers=[26, 27, 28, 29]",
    ])
    path = tmp / f"{name}.yaml"
    dump_config(cfg, path)
    return path


def run(cmd: list[str]) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def history(run_dir: Path) -> list[dict]:
    return [h for h in json.loads((run_dir / "logs" / "history.json").read_text()) if "loss" in h]


@pytest.mark.slow
@pytest.mark.extended
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    ddp_cfg = config_file(tmp_path, "ddp", batch_size=2)
    one_cfg = config_file(tmp_path, "single", batch_size=4)
    out = run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/ddp.yaml"),
               "--num_processes", "2", "--main_process_port", str(free_port()), "-m", "medtune", "train", str(ddp_cfg)])
    assert out.count("trained 2 steps") == 1, "only rank 0 reports"
    assert out.count("prepared ") == 1, "only rank 0 prepares the data"
    run([sys.executable, "-m", "medtune", "train", str(one_cfg)])

    ddp_run, one_run = tmp_path / "ddp", tmp_path / "single"
    manifest = json.loads((ddp_run / "manifest.json").read_text())
    assert manifest["train"]["processes"] == 2 and manifest["train"]["steps"] == 2
    assert json.loads((one_run / "manifest.json").read_text())["train"]["processes"] == 1
    assert sorted(p.name for p in ddp_run.glob("adapter/*.safetensors")) == ["adapter_model.safetensors"]

    ddp_hist, one_hist = history(ddp_run), history(one_run)
    assert [h["step"] for h in ddp_hist] == [h["step"] for h in one_hist] == [1, 2]
    for d, o in zip(ddp_hist, one_hist):
        assert d["num_tokens"] == o["num_tokens"], "both ranks' tokens count: the global batch is 4 examples"
        assert abs(d["loss"] - o["loss"]) < LOSS_TOLERANCE, (d, o)

    # the gradients were all-reduced: both runs end at the same adapter
    ddp_w, one_w = load_file(ddp_run / "adapter/adapter_model.safetensors"), load_file(one_run / "adapter/adapter_model.safetensors")
    assert ddp_w.keys() == one_w.keys()
    assert any(t.abs().sum() > 0 for k, t in ddp_w.items() if "lora_B" in k), "rank 0 saved a trained adapter"
    worst = max((ddp_w[k] - one_w[k]).abs().max().item() for k in ddp_w)
    assert worst < 1e-4, worst


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_shipped_accelerate_configs_launch(name, monkeypatch):
    """Each config under configs/accelerate goes through accelerate's own launch validation and
    becomes the environment its launcher would start the processes with."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = REPO / "configs" / "accelerate" / f"{name}.yaml"
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "medtune", "train", "cfg.yaml"])
    args = _validate_launch_command(args)[0]
    if name.startswith("deepspeed"):
        assert args.use_deepspeed
        args.deepspeed_fields_from_accelerate_config = ""
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == name[-1]
    else:
        assert args.multi_gpu or args.use_fsdp
        env = prepare_multi_gpu_env(args)
    if name == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin

        for key, value in env.items():
            monkeypatch.setenv(key, value)
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward and plugin.auto_wrap_policy is not None
