"""Export a run: merged model, GGUF that is checked against it, Ollama Modelfile, vLLM command, model card.

    <run>/export/
      merged/          safetensors + tokenizer + generation_config.json, merge_check.json   (merge.py)
      gguf/            model-<type>.gguf for each export.gguf_types, verify.json            (gguf.py)
                       parity.json: the GGUF in llama.cpp vs PyTorch, model alone          (parity.py)
      ollama/          Modelfile (FROM ../gguf/model-<best>.gguf)                           (ollama.py)
      vllm/            serve.sh + vllm.yaml: the base model with the LoRA adapter, for GPU users (vllm.py)
      README.md        model card                                                           (card.py)

and, on request, the folder pushed to the Hugging Face Hub (hub.py).

Correct by construction, then checked: the merged model against base+adapter (``merge.py``), each
GGUF against the merged model, failing loudly outside the configured tolerances (``gguf.py``), the
Ollama TEMPLATE against the tokenizer's own chat template (``ollama.py``).

The submodules import ``ExportError`` from here, so ``export`` imports them when it runs (no import
cycle, and ``import medtune.export`` stays light for the CLI).
"""

from __future__ import annotations

import time
from pathlib import Path

from medtune.core.config import RunConfig
from medtune.core.rundir import RunDir

FORMATS = ("merged", "gguf", "ollama", "vllm")


class ExportError(RuntimeError):
    """An export that cannot be made or that fails its own checks."""


def export(
    run_dir: str | Path, formats: list[str], out: str | Path | None = None, cfg: RunConfig | None = None, push_to_hub: str | None = None
) -> Path:
    """Write the requested formats (and the model card) into ``out`` (default ``<run>/export``).

    ``gguf`` needs ``merged``; ``ollama`` needs ``gguf``; missing prerequisites are built first.
    """
    from medtune.export.card import write_model_card
    from medtune.export.gguf import pick_gguf, to_gguf, verify_gguf
    from medtune.export.hub import push
    from medtune.export.merge import merge
    from medtune.export.ollama import write_modelfile
    from medtune.export.parity import deployment_parity
    from medtune.export.vllm import write_vllm

    run = RunDir(run_dir)
    if not run.is_run():
        raise FileNotFoundError(f"{run.path}: not a run directory (config.yaml missing)")
    if not (run.adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"{run.path}: run has no trained adapter yet (adapter/adapter_config.json missing)")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    cfg = cfg or run.load_config()
    out = Path(out) if out else run.path / "export"
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(formats)
    if "ollama" in wanted:
        wanted.add("gguf")
    if "gguf" in wanted:
        wanted.add("merged")
    done: dict = {}
    if "merged" in wanted:
        done["merged"] = merge(run, cfg, out / "merged")
    if "gguf" in wanted:
        done["gguf"] = to_gguf(out / "merged", out / "gguf", cfg.export.gguf_types)
        done["verify"] = verify_gguf(out / "merged", done["gguf"], run, cfg, out / "gguf" / "verify.json")
        done["parity"] = deployment_parity(out / "merged", Path(pick_gguf(done["gguf"])), cfg, out / "gguf" / "parity.json")
    if "ollama" in wanted:
        done["ollama"] = write_modelfile(out / "merged", pick_gguf(done["gguf"]), cfg, out / "ollama" / "Modelfile")
    if "vllm" in wanted:
        done["vllm"] = write_vllm(run, cfg, out / "vllm")
    write_model_card(run, cfg, out, done)
    run.update_manifest(export={"path": str(out), "formats": sorted(wanted), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if push_to_hub:
        push(out, push_to_hub)
    return out
