"""Commands that run the pipeline: prepare, train, eval, run, sweep (``training.pipeline.run_one`` and
the stage and sweep loops over it); ``render`` draws their progress and tables."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from medtune.apps.cli.app import ConfigArg, SetOpt, _config, _fail, command, console
from medtune.apps.cli.render import Progress

RunOrConfigArg = typer.Argument(..., help="YAML config or run directory.")


@command
def prepare(config: Path = ConfigArg, overrides: list[str] | None = SetOpt):
    """Load, clean and split the data; write train/eval JSONL and a data card into the run directory."""
    from medtune.training.pipeline import run_one

    run_one(_config(config, overrides), Progress(console), train=False, evaluate=False)


@command
def train(
    config: Path = ConfigArg,
    overrides: list[str] | None = SetOpt,
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in the run directory."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Resolve model, data and a memory estimate; train nothing."),
):
    """Train a LoRA/QLoRA adapter (prepares the data first if the run has none)."""
    from medtune.training.pipeline import run_one

    cfg = _config(config, overrides)
    if dry_run:
        return _dry_run(cfg)
    if cfg.stages:
        _fail(f"{config}: a multi-stage config; run it with `medtune run {config}`")
    # under `accelerate launch`: rank 0 prepares (when the run has no data), the other ranks then find it;
    # progress is reported by rank 0 only
    run_one(cfg, Progress(console), keep_data=True, evaluate=False, resume=resume)


@command
def eval_(
    config: Path = RunOrConfigArg,
    overrides: list[str] | None = SetOpt,
    data: list[str] | None = typer.Option(None, "--data", help="An external question set, [name=]kind:path (e.g. "
                                          "medquad:../shared/data/medquad/9_CDC_QA), scored like the held-out split; repeatable."),
    index: Path | None = typer.Option(None, "--index", help="Also compare grounded vs ungrounded answers with this index."),
):
    """Evaluate base vs fine-tuned on the held-out split (and --data sets); write eval/report.json, report.md, report.html."""
    from medtune.apps.cli.render import grounded_table, summary_table
    from medtune.core.config import EvalSet
    from medtune.core.rundir import RunDir
    from medtune.evaluate.run import evaluate

    overrides = [*(overrides or []), *([f"retrieval.index={index}"] if index else [])]
    run = RunDir(config) if config.is_dir() else None
    cfg = _config(run.config, overrides) if run else _config(config, overrides)
    run = run or RunDir(cfg.run_dir)
    try:
        sets = [EvalSet.parse(spec) for spec in data or []]
    except ValueError as e:
        _fail(f"--data: {e}")
    report = evaluate(cfg, run, sets)
    console.print(summary_table(report))
    if report.get("grounded"):
        console.print(grounded_table(report["grounded"]))


@command
def run(
    config: Path = ConfigArg,
    overrides: list[str] | None = SetOpt,
    seeds: int | None = typer.Option(None, "--seeds", min=2, help="Train N seeds (train.seed, +1, ...) and report mean ± spread."),
):
    """prepare → train → evaluate, with a summary table at the end."""
    from medtune.apps.cli.render import summary_table
    from medtune.training.pipeline import run_one

    start = time.time()
    cfg = _config(config, overrides)
    if cfg.stages:
        return _run_stages(cfg, start)
    if seeds or cfg.train.seeds:
        return _run_seeds(cfg, seeds, start)
    console.rule(f"[bold]medtune run: {cfg.name}")
    result = run_one(cfg, Progress(console, numbered=True))
    console.print(summary_table(result.report))
    console.print(f"run directory: {result.run.path}  ({result.seconds / 60:.1f} min)")


def _run_seeds(cfg, count: int | None, start: float) -> None:
    from medtune.apps.cli.render import seeds_tables
    from medtune.training.seeds import run_seeds, seed_list

    seeds = seed_list(cfg, count)
    console.rule(f"[bold]medtune run: {cfg.name} ({len(seeds)} seeds: {', '.join(map(str, seeds))})")
    out = run_seeds(cfg, seeds, Progress(console))
    for table in seeds_tables(out):
        console.print(table)
    console.print(f"seeds.md, sweep.csv → {cfg.run_dir}  ({(time.time() - start) / 60:.1f} min)")


def _dry_run(cfg) -> None:
    from medtune.apps.cli.render import print_plan
    from medtune.training.plan import plan

    print_plan(plan(cfg), console)


def _run_stages(cfg, start: float) -> None:
    from medtune.apps.cli.render import stage_table
    from medtune.training.stages import run_stages

    console.rule(f"[bold]medtune run: {cfg.name} ({len(cfg.stages)} stages)")
    table = run_stages(cfg, Progress(console))
    console.print(stage_table(table))
    for f in table["forgetting"]:
        console.print(f"[red]forgetting[/red] {f['metric']}: {f['best']:.4f} after {f['best_stage']} → {f['value']:.4f} after {f['stage']}")
    console.print(f"stage table: {cfg.run_dir / 'stages.md'}  ({(time.time() - start) / 60:.1f} min)")


@command
def sweep(config: Path = ConfigArg, overrides: list[str] | None = SetOpt):
    """Run the config's `sweep:` grid (or random sample), one run per point and seed; compare them."""
    from medtune.apps.cli.render import sweep_table
    from medtune.training.sweep import run_sweep

    cfg = _config(config, overrides)
    if cfg.sweep is None:
        _fail(f"{config}: no sweep section (e.g. sweep: {{grid: {{train.learning_rate: [1e-4, 3e-4]}}}})")
    summary = run_sweep(cfg, Progress(console))
    console.print(sweep_table(summary))
    console.print(f"sweep.csv, sweep.md, sweep.png, best_config.yaml → {cfg.run_dir}")
