"""Commands that run the pipeline: prepare, train, eval, run, sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from medtune.apps.cli.app import ConfigArg, SetOpt, _config, _fail, command, console


@command
def prepare(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt):
    """Load, clean and split the data; write train/eval JSONL and a data card into the run directory."""
    cfg = _config(config, overrides)
    _prepare(cfg)


def _prepare(cfg):
    from medtune.core.rundir import RunDir
    from medtune.data import prepare as data_prepare

    run = RunDir.create(cfg)
    tokenizer = None
    if cfg.data.max_tokens:  # count with the model's own tokenizer, not an estimate
        from medtune.core.models import load_tokenizer, resolve

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
    overrides: Optional[list[str]] = SetOpt,
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in the run directory."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Resolve model, data and a memory estimate; train nothing."),
):
    """Train a LoRA/QLoRA adapter (prepares the data first if the run has none)."""
    from medtune.core.rundir import RunDir
    from medtune.training.train import is_main_process, main_process_first
    from medtune.training.train import train as run_train

    cfg = _config(config, overrides)
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
def eval_(config: Path = typer.Argument(..., help="YAML config or run directory."), overrides: Optional[list[str]] = SetOpt):
    """Evaluate base vs fine-tuned on the held-out split; write eval/report.json and report.md."""
    from medtune.core.rundir import RunDir
    from medtune.evaluate.run import evaluate

    run = RunDir(config) if config.is_dir() else None
    cfg = _config(run.config, overrides) if run else _config(config, overrides)
    run = run or RunDir(cfg.run_dir)
    report = evaluate(cfg, run)
    summary_table(report)


@command
def run(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt):
    """prepare → train → evaluate, with a summary table at the end."""
    from medtune.evaluate.run import evaluate
    from medtune.training.train import train as run_train

    start = time.time()
    cfg = _config(config, overrides)
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
    from medtune.evaluate.run import METRICS

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


def _dry_run(cfg) -> None:
    from medtune.training.plan import plan, print_plan

    print_plan(plan(cfg), console)


def _run_stages(cfg, start: float) -> None:
    from medtune.training.stages import rich_table, run_stages

    console.rule(f"[bold]medtune run: {cfg.name} ({len(cfg.stages)} stages)")
    table = run_stages(cfg, say=console.print)
    console.print(rich_table(table))
    for f in table["forgetting"]:
        console.print(f"[red]forgetting[/red] {f['metric']}: {f['best']:.4f} after {f['best_stage']} → {f['value']:.4f} after {f['stage']}")
    console.print(f"stage table: {cfg.run_dir / 'stages.md'}  ({(time.time() - start) / 60:.1f} min)")


@command
def sweep(config: Path = ConfigArg, overrides: Optional[list[str]] = SetOpt):
    """Run the config's `sweep:` grid (or random sample), one run per point and seed; compare them."""
    from medtune.training.sweep import cell, run_sweep

    cfg = _config(config, overrides)
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
