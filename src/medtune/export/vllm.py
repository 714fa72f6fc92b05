"""vLLM: a command (and its YAML config) serving the base model with the run's LoRA adapter, for GPU users."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import yaml

from medtune.core.atomic import atomic_path, write_text
from medtune.core.config import RunConfig
from medtune.core.rundir import RunDir

log = logging.getLogger(__name__)

VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def write_vllm(run: RunDir, cfg: RunConfig, target: Path) -> dict:
    """A vLLM command (and its YAML config) serving the base model with the run's LoRA adapter."""
    from medtune.core.models import BUILTIN_MODELS, resolve

    resolved = resolve(cfg.model.name, cfg.model.revision)
    base = resolved.path
    upstream = BUILTIN_MODELS.get(cfg.model.name, (None, None, None))[2]
    rank = next((r for r in VLLM_RANKS if r >= cfg.lora.r), cfg.lora.r)
    config = {
        "model": base,
        "served-model-name": f"{cfg.name}-base",
        "enable-lora": True,
        "lora-modules": [f"{cfg.name}={run.adapter.resolve()}"],
        "max-lora-rank": rank,
        "dtype": "auto",
        "host": "127.0.0.1",
        "port": 8000,
        "generation-config": "vllm",
    }
    if resolved.kind == "hub" and cfg.model.revision:
        config["revision"] = cfg.model.revision
    target.mkdir(parents=True, exist_ok=True)
    write_text(target / "vllm.yaml", yaml.safe_dump(config, sort_keys=False))
    args = ["vllm", "serve", base, "--enable-lora", "--lora-modules", f"{cfg.name}={run.adapter.resolve()}",
            "--max-lora-rank", str(rank), "--dtype", "auto", "--host", "127.0.0.1", "--port", "8000"]
    note = f"# The adapter was trained on {base}"
    if upstream:
        note += f" (a de-quantized GGUF of {upstream}; the upstream weights also work, with small differences)"
    script = "\n".join([
        "#!/bin/sh",
        "# Serve the base model with this run's LoRA adapter on a GPU (pip install vllm). Written by medtune export.",
        note,
        "# Ask for the adapter by name: model=" + cfg.name + " in /v1/chat/completions. medtune's guardrails are not applied here;",
        "# put `medtune serve` in front, or apply them in your application.",
        "# Equivalent: vllm serve --config vllm.yaml",
        " ".join(shlex.quote(a) for a in args),
        "",
    ])
    with atomic_path(target / "serve.sh") as tmp:
        tmp.write_text(script)
        tmp.chmod(0o755)
    log.info("vLLM command → %s", target / "serve.sh")
    return {"path": str(target), "command": " ".join(shlex.quote(a) for a in args)}
