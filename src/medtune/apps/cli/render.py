"""Terminal rendering for the pipeline commands: progress from the pipeline's events, the run summary,
the stage and sweep tables and the dry-run plan (rich). The library only logs; this renders."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from medtune.evaluate.metrics import lower_is_better
from medtune.training.plan import format_count


class Progress:
    """An ``events`` callback for ``pipeline.run_one`` (and stages, sweeps) that prints each step.
    ``numbered`` prefixes the steps with ``1/3 prepare`` … (``medtune run``)."""

    def __init__(self, console: Console, numbered: bool = False):
        self.console, self.numbered = console, numbered

    def __call__(self, name: str, data: dict) -> None:
        handler = getattr(self, f"on_{name}", None)
        if handler is not None:
            handler(**data)

    def _step(self, n: int, name: str) -> None:
        if self.numbered:
            self.console.print(f"[bold]{n}/3 {name}")

    def on_stage(self, index: int, count: int, name: str, start: str, previous: str | None) -> None:
        self.console.print(f"[bold]stage {index + 1}/{count}: {name}[/bold]" + (f" (starts from {previous}: {start})" if previous else ""))

    def on_point(self, index: int, count: int, label: str, seed, name: str) -> None:
        self.console.print(f"[bold]point {index + 1}/{count}[/bold] {label}" + (f" seed {seed}" if seed is not None else ""))

    def on_prepare(self, run) -> None:
        self._step(1, "prepare")

    def on_prepared(self, run, card, split, copied_from) -> None:
        where = f"copied from {copied_from}" if copied_from else "prepared"
        self.console.print(f"{where} {split['train']} train / {split['eval']} eval records{replay_note(card)} → {run.data}")

    def on_train(self, run) -> None:
        self._step(2, "train")

    def on_trained(self, run, result) -> None:
        loss = "–" if result.train_loss is None else f"{result.train_loss:.4f}"
        self.console.print(f"trained {result.steps} steps in {result.seconds:.0f}s, train loss {loss} → {run.adapter}")

    def on_evaluate(self, run) -> None:
        self._step(3, "evaluate")


def replay_note(card: dict | None) -> str:
    """What a stage's replay sources drew from the earlier stage."""
    replays = [s for s in (card or {}).get("sources", []) if s["kind"] == "replay"]
    return "".join(f" (replay of {Path(s['path']).name}: {s['records_used']} of {s['records_loaded']} records)" for s in replays)


def summary_table(report: dict):
    """Base vs fine-tuned on the held-out split and on each external set, with the change coloured
    (n.s. = not significant); the share of degenerate answers last, and a line in red below the table
    when the tuned model degenerates more than its base."""
    from medtune.evaluate.metrics import METRICS
    from medtune.evaluate.report import degeneration_warning

    res = report["results"]
    table = Table(title="base vs fine-tuned (held-out split" + (" and external sets)" if report.get("sets") else ")"))
    table.add_column("metric")
    names = [n for n in ("base", "finetuned") if n in res]
    for n in names:
        table.add_column(n, justify="right")
    if len(names) == 2:
        table.add_column("change", justify="right")
    for label, entry in [("", report), *((f"{name}: ", e) for name, e in report.get("sets", {}).items())]:
        if label:
            table.add_section()
        deg = entry.get("degeneration", {})
        rows = [(m, entry["results"], entry.get("differences", {})) for m in METRICS]
        if all(n in deg for n in names):
            rows.append(("degenerate", deg, deg.get("differences", {})))
        for m, values, diffs in rows:
            vals = [values[n].get(m) for n in names]
            if any(v is None for v in vals):
                continue
            cells = [f"{v:.4f}" for v in vals]
            if len(names) == 2:
                delta = vals[1] - vals[0]
                good = delta < 0 if lower_is_better(m) else delta > 0
                significant = diffs.get(m, {}).get("significant")
                cells.append(f"[{'green' if good else 'red'}]{delta:+.4f}[/]" + (" (n.s.)" if significant is False else ""))
            table.add_row(label + m, *cells)
    warnings = degeneration_warning(report)
    if warnings:
        from rich.console import Group
        from rich.text import Text

        return Group(table, *(Text(w, style="bold red") for w in warnings))
    return table


def stage_table(table: dict) -> Table:
    """The stage table (``stages.run_stages``): each cell coloured by its change from the row above."""
    out = Table(title="stage by stage (red = worse than the row above)")
    out.add_column("metric")
    for row in table["rows"]:
        out.add_column(row["stage"], justify="right")
    for col in table["columns"]:
        lower = lower_is_better(col)
        cells, previous = [], None
        for row in table["rows"]:
            value = row["metrics"].get(col)
            cell = _fmt(value)
            if value is not None and previous is not None and abs(value - previous) > 1e-9:
                worse = value > previous if lower else value < previous
                cell = f"[{'red' if worse else 'green'}]{cell}[/]"
            cells.append(cell)
            previous = value if value is not None else previous
        out.add_row(col, *cells)
    return out


def sweep_table(summary: dict) -> Table:
    """The sweep summary (``sweep.run_sweep``): a row per point, mean ± 95% CI across seeds, of the headline metrics."""
    from medtune.training.sweep import cell, headline_metrics, versus_cell

    metrics = headline_metrics(summary)
    table = Table(title=f"sweep: mean ± 95% CI across seeds; best by {summary['metric']} (every metric: sweep.md)")
    table.add_column("point")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("vs best", justify="right")
    for p in summary["points"]:
        label = f"[bold green]{p['label']} (best)[/]" if p["point"] == summary["best"] else p["label"]
        table.add_row(label, *[cell(p["metrics"].get(m)) for m in metrics], versus_cell(p.get("vs_best")))
    return table


def seeds_tables(out: dict) -> list[Table]:
    """Seed variance (``seeds.run_seeds``): per question set, base, tuned mean ± sd, gain and whether it exceeds the spread."""
    tables = []
    for name, rows in out["sets"].items():
        table = Table(title=f"{name}: {len(out['seeds'])} seeds")
        for col in ("metric", "base", "tuned (mean ± sd)", "gain (95% CI)", "exceeds seed spread"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for r in rows:
            gain = "–" if r["gain"] is None else f"{r['gain']:+.4f} [{r['gain_ci'][0]:+.4f}, {r['gain_ci'][1]:+.4f}]"
            exceeds = {True: "[green]yes[/]", False: "[red]no[/]", None: "–"}[r["exceeds_spread"]]
            table.add_row(r["metric"], f"{r['base']:.4f}", f"{r['tuned_mean']:.4f} ± {r['tuned_sd']:.4f}", gain, exceeds)
        tables.append(table)
    return tables


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def print_plan(p: dict, console) -> None:
    """The plan as rich tables."""
    from rich.table import Table

    for title, one in ([(s["name"] + f" (start: {s['start']})", s) for s in p["stages"]] if "stages" in p else [("", p)]):
        m, d, mem = one["model"], one["data"], one["memory"]
        console.rule(f"[bold]dry run{': ' + title if title else ''}")
        status = "[green]resolved[/]" if m["status"] == "resolved" else f"[yellow]not resolved[/]: {m['error']}"
        console.print(f"model: {m['reference']} ({m.get('kind')}, {m['quantization']}, compute {mem['dtype']}) — {status}", soft_wrap=True)
        console.print(f"  {format_count(m['parameters'])} parameters; architecture from {m['shape_source']}: {m['shape']}", soft_wrap=True)
        table = Table(title="data (records before cleaning)")
        for col in ("source", "status", "records", "asked", "expected in mixture"):
            table.add_column(col)
        for s in d["sources"]:
            table.add_row(f"{s['kind']}:{s['path']}", s["status"], str(s["records"] if s["records"] is not None else "?"),
                          ", ".join(f"{k}={v}" for k, v in s["asked"].items()) or "all",
                          str(s["expected"] if s["expected"] is not None else "?"))
        console.print(table)
        approx = "" if d["estimate_complete"] else " (Hub sources without a count not included)"
        steps = one["optimizer_steps"]
        if steps is None:
            steps = "unknown (Hub data of unknown size; set a count or train.max_steps)"
        console.print(f"training records ≈ {d['train_records_estimate']}{approx}; optimizer steps ≈ {steps}")
        if d["tokens"]:
            t = d["tokens"]
            console.print(f"tokens per example ({d['tokens_measured_by']}): median {t['median']}, p95 {t['p95']}, max {t['max']}; "
                          f"{t['over_max_seq_length']} over max_seq_length={t['max_seq_length']}")
        table = Table(title=f"memory estimate, {mem['dtype']}, batch {mem['batch_size']} × {mem['max_seq_length']} tokens")
        table.add_column("part")
        table.add_column("GiB", justify="right")
        for k in ("weights", "lora_parameters", "lora_gradients", "optimizer_state", "activations", "logits"):
            table.add_row(k.replace("_", " "), f"{mem[k]:.3f}")
        table.add_row("[bold]total", f"[bold]{mem['total_gib']:.2f}")
        console.print(table)
        console.print(mem["note"])
        console.print(f"LoRA: {mem['lora_parameter_count']:,} parameters on {mem['adapted_layers']} layers × {', '.join(mem['targets'])}; "
                      f"device: {mem['device']}")
        console.print(f"trackers: {one['trackers']}")


def grounded_table(result: dict) -> Table:
    """Grounded vs ungrounded answers (``evaluate.grounded.compare_grounding``), with citation checks."""
    res, diffs = result["results"], result["differences"]
    table = Table(title=f"grounded vs ungrounded ({result['n']} questions)")
    for col in ("metric", "ungrounded", "grounded", "change", "95% CI"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m in res["grounded"]:
        d = diffs[m]
        ci = f"{d['ci'][0]:+.4f}…{d['ci'][1]:+.4f}" if d.get("ci") else "–"
        colour = "green" if d["difference"] > 0 else "red"
        table.add_row(m, f"{res['ungrounded'][m]:.4f}", f"{res['grounded'][m]:.4f}",
                      f"[{colour}]{d['difference']:+.4f}[/]" + ("" if d.get("significant") else " (n.s.)"), ci)
    c = result["citations"]
    precision = "–" if c["precision"] is None else f"{c['precision']:.2f}"
    in_document = "–" if c.get("document_precision") is None else f"{c['document_precision']:.2f}"
    own = "–" if c.get("model_precision") is None else f"{c['model_precision']:.2f}"
    listed = "–" if result["sources_listed_rate"] is None else f"{result['sources_listed_rate']:.0%}"
    table.caption = (f"not found: {result['not_found_rate']:.0%} · sources listed: {listed} · answers citing: {c['answers_citing']} · "
                     f"citations removed: {c['removed']} · cited sentences supported: {c['supported']}/{c['cited_sentences']} "
                     f"(precision {precision}; {c.get('document_supported', 0)} held by the cited document: {in_document}) · "
                     f"citations moved to the passage holding their sentence: {c.get('moved', 0)} (as the model cited: precision {own})")
    return table
