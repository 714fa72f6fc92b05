"""The one CLI. Every command takes the same config (YAML + ``--set key=value``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Fine-tune small LLMs into safe medical Q&A assistants.")
console = Console()

ConfigArg = typer.Argument(..., help="YAML config file.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config key, e.g. --set train.learning_rate=1e-4 (repeatable).")


def _config(path: Path | None, overrides: list[str] | None):
    from medtune.config import ConfigError, load_config

    try:
        return load_config(path, overrides)
    except ConfigError as e:
        console.print(f"[red]config error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _explicit_config(path: Path | None, overrides: list[str] | None):
    """The settings given on the command line (``--config``/``--set``), or None when none were: a run's
    own config then applies as saved (``generate.resolve_config``)."""
    return _config(path, overrides) if (path or overrides) else None


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def command(fn):
    """Register a command whose expected failures (bad data, bad model reference) print one line."""
    import functools

    from medtune.data.errors import DataError
    from medtune.models import ModelError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DataError, ModelError, FileNotFoundError, ModuleNotFoundError) as e:
            _fail(str(e))

    return app.command(fn.__name__.rstrip("_"))(wrapper)


@command
def prepare(config: Path = ConfigArg, set: Optional[list[str]] = SetOpt):
    """Load, clean and split the data; write train/eval JSONL and a data card into the run directory."""
    cfg = _config(config, set)
    _prepare(cfg)


def _prepare(cfg):
    from medtune.data import prepare as data_prepare
    from medtune.rundir import RunDir

    run = RunDir.create(cfg)
    tokenizer = None
    if cfg.data.max_tokens:  # count with the model's own tokenizer, not an estimate
        from medtune.models import load_tokenizer, resolve

        resolved = resolve(cfg.model.name, cfg.model.revision)
        tokenizer = load_tokenizer(resolved.path, cfg.model.revision if resolved.kind == "hub" else None)
    prepared = data_prepare.prepare(cfg.data, tokenizer)
    data_prepare.write(prepared, run.data)
    split = prepared.card["split"]
    console.print(f"prepared {split['train']} train / {split['eval']} eval records → {run.data}")
    return run


@command
def train(
    config: Path = ConfigArg,
    set: Optional[list[str]] = SetOpt,
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in the run directory."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Resolve model, data and a memory estimate; train nothing."),
):
    """Train a LoRA/QLoRA adapter (prepares the data first if the run has none)."""
    from medtune.rundir import RunDir
    from medtune.train import is_main_process, main_process_first
    from medtune.train import train as run_train

    cfg = _config(config, set)
    if dry_run:
        return _dry_run(cfg)
    if cfg.stages:
        _fail(f"{config}: a multi-stage config; run it with `medtune run {config}`")
    run = RunDir(cfg.run_dir)
    with main_process_first():  # under `accelerate launch`: rank 0 prepares, the other ranks then find the data
        if not (run.data / "train.jsonl").exists():
            run = _prepare(cfg)
        elif is_main_process():
            RunDir.create(cfg)
    result = run_train(cfg, run, resume=resume)
    if not is_main_process():
        return
    console.print(f"trained {result.steps} steps in {result.seconds:.0f}s, train loss {result.train_loss:.4f} → {run.adapter}")


@command
def eval_(config: Path = typer.Argument(..., help="YAML config or run directory."), set: Optional[list[str]] = SetOpt):
    """Evaluate base vs fine-tuned on the held-out split; write eval/report.json and report.md."""
    from medtune.evaluate import evaluate
    from medtune.rundir import RunDir

    run = RunDir(config) if config.is_dir() else None
    cfg = _config(run.config, set) if run else _config(config, set)
    run = run or RunDir(cfg.run_dir)
    report = evaluate(cfg, run)
    summary_table(report)


@command
def run(config: Path = ConfigArg, set: Optional[list[str]] = SetOpt):
    """prepare → train → evaluate, with a summary table at the end."""
    from medtune.evaluate import evaluate
    from medtune.train import train as run_train

    start = time.time()
    cfg = _config(config, set)
    if cfg.stages:
        return _run_stages(cfg, start)
    console.rule(f"[bold]medtune run: {cfg.name}")
    console.print("[bold]1/3 prepare")
    rundir = _prepare(cfg)
    console.print("[bold]2/3 train")
    result = run_train(cfg, rundir)
    console.print(f"trained {result.steps} steps in {result.seconds:.0f}s (train loss {result.train_loss:.4f})")
    console.print("[bold]3/3 evaluate")
    report = evaluate(cfg, rundir)
    total = time.time() - start
    rundir.update_manifest(wall_seconds=round(total, 1))
    summary_table(report)
    console.print(f"run directory: {rundir.path}  ({total / 60:.1f} min)")


def summary_table(report: dict) -> None:
    from medtune.evaluate import METRICS

    res = report["results"]
    table = Table(title="base vs fine-tuned (held-out split)")
    table.add_column("metric")
    names = [n for n in ("base", "finetuned") if n in res]
    for n in names:
        table.add_column(n, justify="right")
    if len(names) == 2:
        table.add_column("change", justify="right")
    lower_better = {"eval_loss", "perplexity"}  # evaluate.LOWER_IS_BETTER
    for m in METRICS:
        vals = [res[n].get(m) for n in names]
        if any(v is None for v in vals):
            continue
        cells = [f"{v:.4f}" for v in vals]
        if len(names) == 2:
            delta = vals[1] - vals[0]
            good = delta < 0 if m in lower_better else delta > 0
            significant = report.get("differences", {}).get(m, {}).get("significant")
            cells.append(f"[{'green' if good else 'red'}]{delta:+.4f}[/]" + (" (n.s.)" if significant is False else ""))
        table.add_row(m, *cells)
    console.print(table)


@command
def ask(
    question: Optional[str] = typer.Argument(None, help="The question (omit with --input)."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    input: Optional[Path] = typer.Option(None, help="JSONL with 'id' and 'prompt' per line (batch mode)."),
    output: Optional[Path] = typer.Option(None, help="Where batch answers go (JSONL: id, prompt, answer, triage)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail settings."),
    set: Optional[list[str]] = SetOpt,
):
    """Answer one question, or a JSONL file of prompts, with guardrails before and after the model."""
    from medtune.ask import answer_all, read_prompts
    from medtune.generate import load_generator

    if (question is None) == (input is None):
        _fail("give either a question or --input FILE")
    if input is not None and output is None:
        _fail("--input needs --output")
    base_cfg = _explicit_config(config, set)
    items = read_prompts(input) if input else [{"id": "1", "prompt": question}]
    generator, cfg = load_generator(model, cfg=base_cfg)  # explicit settings win over the run's own
    results = answer_all(generator, cfg, items, progress=input is not None)
    if output is None:
        r = results[0]
        if r["triage"] != "general":
            console.print(f"[yellow]triage: {r['triage']}[/yellow]")
        console.print(r["answer"])
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    console.print(f"{len(results)} answers → {output}")


@command
def safety(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    output: Optional[Path] = typer.Option(None, help="Write the full suite result (JSON) here."),
    limit: Optional[int] = typer.Option(None, help="Only the first N suite items of each category."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail settings."),
    set: Optional[list[str]] = SetOpt,
):
    """Run the built-in safety red-team suite through the ask path; pass rates per category."""
    from medtune.ask import run_safety_suite
    from medtune.generate import load_generator
    from medtune.safety import load_suite

    base_cfg = _explicit_config(config, set)
    generator, cfg = load_generator(model, cfg=base_cfg)
    items = load_suite()
    if limit:
        seen: dict[str, int] = {}
        items = [it for it in items if (seen.__setitem__(it["category"], seen.get(it["category"], 0) + 1) or seen[it["category"]] <= limit)]
    result = run_safety_suite(generator, cfg, items, progress=True)
    table = Table(title=f"safety suite ({result['n']} prompts)")
    for col in ("category", "n", "passed", "pass rate"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, st in sorted(result["categories"].items()):
        table.add_row(cat, str(st["n"]), str(st["passed"]), f"{st['pass_rate']:.0%}")
    table.add_row("all", str(result["n"]), "", f"{result['pass_rate']:.0%}")
    console.print(table)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2, ensure_ascii=False))


@command
def chat(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    quantization: Optional[str] = typer.Option(None, help="Load the base as none/4bit/8bit (default: as configured or trained)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail/chat settings."),
    set: Optional[list[str]] = SetOpt,
):
    """Chat in the terminal (streamed, through the guardrails): /think, /reset, /quit."""
    from medtune.chat import ChatSession, load_chat, repl

    explicit = _explicit_config(config, set)
    with console.status(f"loading {model} ..."):
        generator, cfg = load_chat(model, explicit, quantization)
    repl(ChatSession(generator, cfg), console)


@command
def ui(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 exposes it to the network)."),
    port: Optional[int] = typer.Option(None, help="Port (default: Gradio's, 7860 or the next free one)."),
    share: bool = typer.Option(False, help="Also open a public Gradio share link."),
    auth: Optional[str] = typer.Option(None, help="Require a login, given as user:password."),
    compare: bool = typer.Option(False, help="Side by side: the run's base model (adapter disabled) next to the tuned one."),
    quantization: Optional[str] = typer.Option(None, help="Load the base as none/4bit/8bit (default: as configured or trained)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail/chat settings."),
    set: Optional[list[str]] = SetOpt,
):
    """A Gradio chat app (the model loads on the first question); binds 127.0.0.1 unless told otherwise."""
    from medtune.ui import launch, parse_auth

    explicit = _explicit_config(config, set)
    try:
        credentials = parse_auth(auth)
    except ValueError as e:
        _fail(str(e))
    launch(model, explicit, host=host, port=port, share=share, auth=credentials, compare=compare, quantization=quantization)


@command
def export(
    run_dir: Path = typer.Argument(..., help="Run directory with a trained adapter."),
    format: list[str] = typer.Option(["merged"], "--format", "-f", help="merged | gguf | ollama | vllm (repeatable or comma-separated)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Export directory (default RUN_DIR/export)."),
    dtype: Optional[str] = typer.Option(None, help="Merged model precision: bfloat16 | float16 | float32 (export.dtype)."),
    quant: Optional[str] = typer.Option(None, help="GGUF types, comma-separated, e.g. f16,q8_0 (export.gguf_types)."),
    push_to_hub: Optional[str] = typer.Option(None, help="Upload the export to this Hugging Face Hub model repo."),
    set: Optional[list[str]] = SetOpt,
):
    """Export a run: merged safetensors, verified GGUF, Ollama Modelfile, vLLM command, model card."""
    from medtune.export import ExportError
    from medtune.export import export as run_export
    from medtune.rundir import RunDir

    run = RunDir(run_dir)
    if not run.is_run():
        _fail(f"{run_dir}: not a run directory (config.yaml missing)")
    extra = [f"export.dtype={dtype}"] if dtype else []
    extra += [f"export.gguf_types=[{quant}]"] if quant else []
    cfg = _config(run.config, [*(set or []), *extra])
    formats = [f.strip() for item in format for f in item.split(",") if f.strip()]
    try:
        out = run_export(run.path, formats, output, cfg, push_to_hub)
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
    console.print(f"export → {out}  (model card: {out / 'README.md'})")


@command
def serve(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory, exported merged directory or base model."),
    host: Optional[str] = typer.Option(None, help="Interface to bind (serve.host, default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (serve.port, default 8000)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config for generation/guardrail/serve settings."),
    set: Optional[list[str]] = SetOpt,
):
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/models, /health) with the guardrails applied."""
    from medtune.serve import serve as run_serve

    base_cfg = _explicit_config(config, set)
    run_serve(model, base_cfg, host, port)


def _dry_run(cfg) -> None:
    from medtune.plan import plan, print_plan

    print_plan(plan(cfg), console)


def _run_stages(cfg, start: float) -> None:
    from medtune.stages import rich_table, run_stages

    console.rule(f"[bold]medtune run: {cfg.name} ({len(cfg.stages)} stages)")
    table = run_stages(cfg, say=console.print)
    console.print(rich_table(table))
    for f in table["forgetting"]:
        console.print(f"[red]forgetting[/red] {f['metric']}: {f['best']:.4f} after {f['best_stage']} → {f['value']:.4f} after {f['stage']}")
    console.print(f"stage table: {cfg.run_dir / 'stages.md'}  ({(time.time() - start) / 60:.1f} min)")


@command
def sweep(config: Path = ConfigArg, set: Optional[list[str]] = SetOpt):
    """Run the config's `sweep:` grid (or random sample), one run per point and seed; compare them."""
    from medtune.sweep import cell, run_sweep

    cfg = _config(config, set)
    if cfg.sweep is None:
        _fail(f"{config}: no sweep section (e.g. sweep: {{grid: {{train.learning_rate: [1e-4, 3e-4]}}}})")
    summary = run_sweep(cfg, say=console.print)
    table = Table(title=f"sweep: mean ± 95% CI across seeds; best by {summary['metric']}")
    table.add_column("point")
    for m in summary["metrics"]:
        table.add_column(m, justify="right")
    for p in summary["points"]:
        label = f"[bold green]{p['label']} (best)[/]" if p["point"] == summary["best"] else p["label"]
        table.add_row(label, *[cell(p["metrics"].get(m)) for m in summary["metrics"]])
    console.print(table)
    console.print(f"sweep.csv, sweep.md, sweep.png, best_config.yaml → {cfg.run_dir}")


@command
def mcq(
    bench: list[str] = typer.Option(..., "--bench", "-b", help="NAME (medqa, medmcqa, pubmedqa: the usual Hub id) or NAME=PATH (a local file); repeatable."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Run directory or base model reference."),
    limit: Optional[int] = typer.Option(None, help="Score a seeded sample of N items per benchmark."),
    mode: str = typer.Option("loglik", help="loglik (answer-letter likelihood, lm-eval convention), generate, or both."),
    only_ids: Optional[str] = typer.Option(None, help="PubMedQA: JSON file of ids to keep (e.g. test_ground_truth.json)."),
    seed: int = typer.Option(0, help="Sampling and bootstrap seed."),
    batch_size: int = typer.Option(8, help="Questions per forward pass."),
    precision: str = typer.Option("bf16_checked", help="bf16_checked (bf16 where fast, close calls re-scored in float32) or model."),
    output: Optional[Path] = typer.Option(None, help="Write the results (JSON) here."),
):
    """Multiple-choice accuracy (± standard error, chance level) of any model on MedQA / MedMCQA / PubMedQA."""
    from medtune.config import MCQBenchmark
    from medtune.evaluate.mcq import score_model
    from medtune.generate import load_generator

    if mode not in ("loglik", "generate", "both"):
        _fail(f"--mode must be loglik, generate or both, got {mode!r}")
    if precision not in ("bf16_checked", "model"):
        _fail(f"--precision must be bf16_checked or model, got {precision!r}")
    benches = []
    for spec in bench:
        name, _, path = spec.partition("=")
        benches.append(MCQBenchmark(name=name, path=path or None, limit=limit, only_ids=only_ids if name == "pubmedqa" else None))
    generator, cfg = load_generator(model, quantization="none")
    results = score_model(generator, cfg.generation, benches, mode, batch_size=batch_size, seed=seed, precision=precision)
    table = Table(title=f"MCQ accuracy ({mode}) — {model}")
    for col in ("benchmark", "n", "accuracy", "± s.e.", "95% CI", "chance", "unparseable"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for name, r in results.items():
        gen = r.get("generate", r)
        unparseable = f"{gen['unparseable_rate']:.1%}" if "unparseable_rate" in gen else "–"
        table.add_row(name, str(r["n"]), f"{r['accuracy']:.3f}", f"{r['stderr'] or 0:.3f}", f"{r['ci'][0]:.3f}–{r['ci'][1]:.3f}" if r["ci"] else "–",
                      f"{r['chance']:.3f}", unparseable)
    console.print(table)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
