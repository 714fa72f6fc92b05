"""A run directory describes itself: resolved config, manifest, data, adapter, logs, metrics, plots.

    runs/<name>/
      config.yaml          resolved config (every default spelled out)
      manifest.json        library versions, seed, data hashes, base model identity, timings
      data/                train.jsonl, eval.jsonl, data_card.{json,md}
      adapter/             PEFT adapter (safetensors) + tokenizer
      checkpoints/         trainer checkpoints (resume)
      logs/                tensorboard events, history.json, curves.png
      eval/                report.json, report.md, answers.jsonl

Every file in it is written atomically (``core.atomic``): whole under its final name, or not there.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from medtune.core.atomic import write_json
from medtune.core.config import RunConfig, dump_config, load_config

LIBRARIES = (
    "medtune",
    "torch",
    "transformers",
    "peft",
    "trl",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "rouge-score",
    "sacrebleu",
    "bert-score",
)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    manifest_path = property(lambda self: self.path / "manifest.json")
    data = property(lambda self: self.path / "data")
    adapter = property(lambda self: self.path / "adapter")
    checkpoints = property(lambda self: self.path / "checkpoints")
    logs = property(lambda self: self.path / "logs")
    eval = property(lambda self: self.path / "eval")

    @classmethod
    def create(cls, cfg: RunConfig) -> RunDir:
        run = cls(cfg.run_dir)
        run.path.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run.config)
        return run

    def load_config(self) -> RunConfig:
        return load_config(self.config)

    def is_run(self) -> bool:
        return self.config.is_file()

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text()) if self.manifest_path.exists() else {}

    def update_manifest(self, **sections) -> dict:
        """Merge sections into manifest.json (each stage adds its own)."""
        m = self.manifest()
        m.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        m["environment"] = environment()
        m.update(sections)
        write_json(self.manifest_path, m, indent=2, ensure_ascii=False, default=str)
        return m


def environment() -> dict:
    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "libraries": libs, "argv": sys.argv}
