"""``medtune export``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from medtune.apps.cli.app import SetOpt, _config, _fail, command, console


@command
def export(
    run_dir: Path = typer.Argument(..., help="Run directory with a trained adapter."),
    formats: list[str] = typer.Option(["merged"], "--format", "-f", help="merged | gguf | ollama | vllm (repeatable or comma-separated)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Export directory (default RUN_DIR/export)."),
    dtype: str | None = typer.Option(None, help="Merged model precision: bfloat16 | float16 | float32 (export.dtype)."),
    quant: str | None = typer.Option(None, help="GGUF types, comma-separated, e.g. f16,q8_0 (export.gguf_types)."),
    push_to_hub: str | None = typer.Option(None, help="Upload the export to this Hugging Face Hub model repo."),
    overrides: list[str] | None = SetOpt,
):
    """Export a run: merged safetensors, verified GGUF, Ollama Modelfile, vLLM command, model card."""
    from medtune.core.rundir import RunDir
    from medtune.export import ExportError
    from medtune.export import export as run_export

    run = RunDir(run_dir)
    if not run.is_run():
        _fail(f"{run_dir}: not a run directory (config.yaml missing)")
    extra = [f"export.dtype={dtype}"] if dtype else []
    extra += [f"export.gguf_types=[{quant}]"] if quant else []
    cfg = _config(run.config, [*(overrides or []), *extra])
    chosen = [f.strip() for item in formats for f in item.split(",") if f.strip()]
    try:
        out = run_export(run.path, chosen, output, cfg, push_to_hub)
    except ExportError as e:
        _fail(str(e))
    verify = out / "gguf" / "verify.json"
    if verify.exists():
        table = Table(title="GGUF vs merged model")
        for col in ("type", "token agreement", "greedy identical", "perplexity change", "MB"):
            table.add_column(col, justify="left" if col == "type" else "right")
        for t, e in json.loads(verify.read_text())["gguf"].items():
            table.add_row(t, f"{e['token_agreement']:.4f}", e["greedy_identical"], f"{e['perplexity_change']:+.3%}", str(e["size_mb"]))
        console.print(table)
    parity = out / "gguf" / "parity.json"
    if parity.exists():
        p = json.loads(parity.read_text())
        table = Table(title=f"deployment parity: model alone, {p['prompts']} prompts (llama.cpp vs PyTorch, "
                            f"repeat penalty {p['repeat_penalty']})")
        for col in ("engine", "pass rate", "ends on EOS", "template leaks", "degenerate"):
            table.add_column(col, justify="left" if col == "engine" else "right")
        for name in ("llama_cpp", "pytorch"):
            e = p[name]
            table.add_row(name, f"{e['pass_rate']:.0%}", f"{e['eos_share']:.0%}", str(e["leaks"]), f"{e['degenerate_share']:.0%}")
        console.print(table)
        console.print(f"verdict agreement {p['verdict_agreement']:.0%}, identical answers {p['identical_answers']:.0%}")
    console.print(f"export → {out}  (model card: {out / 'README.md'})")
