"""Sweeps: the same run at several points of a hyperparameter grid, one after another.

``sweep:`` in a config names dotted keys and values (``{grid: {train.learning_rate: [...], lora.r:
[...]}}``); ``mode: grid`` runs every combination, ``mode: random`` a seeded sample of ``samples``
of them. Every point runs once per seed in ``seeds`` (``train.seed``). Each (point, seed) is an
ordinary run directory under ``output_dir/name/points/`` (prepare → train → evaluate); points whose
data section is the same share one prepared data set (copied, so every run stays self-describing).

Written to ``output_dir/name/``: ``sweep.csv`` (one row per run), ``sweep.md`` and ``sweep.json``
(per point: mean and 95% confidence half-width across seeds, Student's t; and whether the point differs
from the best beyond seed noise), ``sweep.png`` (bars with those intervals) and ``best_config.yaml``
(the best point's resolved config, without the sweep).

Seed noise: a point differs from the best when the difference of their means on ``sweep.metric`` is more
than ``SPREAD_FACTOR`` (2) × the seeds' standard deviation (pooled over the two points), the rule
``seeds.md`` applies to base → tuned; it needs two seeds or more per point. With one seed per point and a
per-answer metric (ROUGE, BLEU; of the held-out split or of an ``eval.sets`` set), the point is compared with
the best on the same answers instead: a paired bootstrap 95% interval over the questions both answered
(question noise, not seed noise: a sweep of expensive runs can still say which differences are more than chance).

A (point, seed) run that already finished with the same resolved config (its ``eval/report.json`` written and
the manifest's wall time recorded) is not run again, and one killed during its evaluation is evaluated, not
trained again (``progress``): ``medtune sweep`` after a kill goes on where it stopped, and the comparison files
are rewritten from all the runs.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import random
import statistics
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

from medtune.core.atomic import atomic_file, atomic_path, write_json, write_text
from medtune.core.config import ConfigError, RunConfig, dump_config, point_config
from medtune.core.rundir import RunDir
from medtune.evaluate.metrics import lower_is_better
from medtune.evaluate.report import answers_path
from medtune.training.pipeline import Events, run_one
from medtune.training.seeds import SPREAD_FACTOR
from medtune.training.stages import report_metrics

log = logging.getLogger(__name__)

FIRST_COLUMNS = ("train_loss", "eval_loss")
ANSWER_METRICS = ("rouge1", "rouge2", "rougeL", "bleu")
"""Per-answer metrics a one-seed sweep compares point by point on the same answers."""


def points(cfg: RunConfig) -> list[dict[str, Any]]:
    """The sweep's points as ``{dotted key: value}``, in grid order (a seeded sample in random mode)."""
    grid = cfg.sweep.grid
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())] if grid else [{}]
    if cfg.sweep.mode == "random":
        n = min(cfg.sweep.samples, len(combos))
        combos = [combos[i] for i in sorted(random.Random(cfg.sweep.seed).sample(range(len(combos)), n))]
    return combos


def run_sweep(cfg: RunConfig, events: Events | None = None) -> dict:
    """Run every (point, seed) in turn (``pipeline.run_one``); write the comparison files; return the summary.
    ``events`` gets ``point`` (``{"index", "count", "label", "seed", "name"}``) before each run, then
    that run's ``run_one`` events."""
    root = RunDir.create(cfg)
    seeds = cfg.sweep.seeds or [None]
    todo = points(cfg)
    prepared: dict[str, Path] = {}
    rows = []
    for i, point in enumerate(todo):
        for seed in seeds:
            name = f"p{i:02d}" + (f"-s{seed}" if seed is not None else "")
            log.info("point %d/%d %s%s", i + 1, len(todo), _label(point), f" seed {seed}" if seed is not None else "")
            if events is not None:
                events("point", {"index": i, "count": len(todo), "label": _label(point), "seed": seed, "name": name})
            pcfg = point_config(cfg, point, seed, str(root.path / "points"), name)
            key = json.dumps(pcfg.data.model_dump(mode="json"), sort_keys=True)
            run = RunDir(pcfg.run_dir)
            state = progress(run, pcfg)
            if state == "done":
                log.info("%s: finished earlier with this config, not run again", run.path)
                report = json.loads((run.eval / "report.json").read_text())
            else:
                if state == "trained":
                    log.info("%s: trained earlier with this config; evaluating it", run.path)
                result = run_one(pcfg, events, data_from=None if state else prepared.get(key), keep_data=state == "trained",
                                 train=state != "trained")
                run, report = result.run, result.report
            prepared.setdefault(key, run.data)
            rows.append({"point": i, "seed": pcfg.train.seed, "run_dir": str(run.path), **{k: point[k] for k in point},
                         **run_metrics(run, report)})
    summary = summarise(cfg, todo, rows)
    write_outputs(cfg, root.path, rows, summary)
    return summary


def progress(run: RunDir, cfg: RunConfig) -> str | None:
    """How far a (point, seed) run got with the resolved config ``cfg``: ``"done"`` (report written, wall time in
    the manifest), ``"trained"`` (adapter saved, killed during the evaluation) or None (not started, killed while
    training, or its directory holds another config's run: it runs again, over it). The manifest must be newer
    than ``config.yaml``, which every run rewrites first, so a kill early in a later run is not mistaken for it."""
    if not (run.is_run() and run.manifest_path.is_file()) or run.manifest_path.stat().st_mtime_ns < run.config.stat().st_mtime_ns:
        return None
    try:
        if run.load_config().model_dump(mode="json") != cfg.model_dump(mode="json"):
            return None
    except (ConfigError, OSError) as e:  # a config an older medtune wrote: run the point again
        log.warning("%s: its config no longer loads (%s); running it again", run.config, e)
        return None
    manifest = run.manifest()
    if "wall_seconds" in manifest and (run.eval / "report.json").is_file():
        return "done"
    if "adapter" in manifest and (run.adapter / "adapter_model.safetensors").is_file():
        return "trained"
    return None


def run_metrics(run: RunDir, report: dict) -> dict[str, float]:
    """Optimizer steps (from the manifest), final train loss (last logged), eval metrics of the tuned model, and
    corpus BLEU of its answers (sacrebleu, 0–100) when the report has none."""
    history = json.loads((run.logs / "history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    metrics = {"steps": int(run.manifest().get("train", {}).get("steps", 0)), "train_loss": losses[-1] if losses else math.nan}
    metrics.update(report_metrics(report))
    if "bleu" not in metrics and answers_path(run.eval).exists():
        import sacrebleu

        rows = _answer_rows(answers_path(run.eval))
        if rows:
            metrics["bleu"] = sacrebleu.corpus_bleu([r["finetuned"] for r in rows], [[r["reference"] for r in rows]]).score
    return metrics


def sweep_lower_is_better(cfg: RunConfig, metric: str) -> bool:
    """``sweep.greater_is_better`` when set, else the metric's own direction (``metrics.lower_is_better``)."""
    if cfg.sweep.greater_is_better is not None:
        return not cfg.sweep.greater_is_better
    return lower_is_better(metric)


def summarise(cfg: RunConfig, todo: list[dict], rows: list[dict]) -> dict:
    """Per point and metric: mean, 95% CI half-width (Student's t; None with one seed), n; the best point."""
    from scipy import stats

    keys = list(cfg.sweep.grid)
    metrics = [m for m in FIRST_COLUMNS if any(m in r for r in rows)]
    metrics += sorted({m for r in rows for m in r if m not in ("point", "seed", "run_dir", "steps", *keys, *metrics)})
    per_point = []
    for i, point in enumerate(todo):
        mine = [r for r in rows if r["point"] == i]
        cells = {}
        for m in metrics:
            values = [r[m] for r in mine if m in r and r[m] is not None and not math.isnan(r[m])]
            if not values:
                continue
            sd = statistics.stdev(values) if len(values) > 1 else None
            ci = stats.t.ppf(0.975, len(values) - 1) * sd / math.sqrt(len(values)) if sd is not None else None
            cells[m] = {"mean": statistics.fmean(values), "ci95": ci, "sd": sd, "n": len(values)}
        per_point.append({"point": i, "label": _label(point), "values": point, "metrics": cells})
    metric = cfg.sweep.metric
    scored = [p for p in per_point if metric in p["metrics"]]
    if not scored:
        raise ValueError(f"sweep.metric: no run reported '{metric}' (have: {', '.join(metrics)})")
    lower = sweep_lower_is_better(cfg, metric)
    best = (min if lower else max)(scored, key=lambda p: p["metrics"][metric]["mean"])
    for p in scored:
        p["vs_best"] = None if p is best else versus(p["metrics"][metric], best["metrics"][metric])
    one_seed = [p for p in scored if p["vs_best"] is not None and p["vs_best"]["beyond_noise"] is None]
    if one_seed:
        best_items = _point_items(rows, best["point"], metric)
        for p in one_seed:
            p["vs_best"]["answers"] = paired_answers(cfg, metric, _point_items(rows, p["point"], metric), best_items)
    return {"metric": metric, "lower_is_better": lower, "metrics": metrics, "points": per_point, "best": best["point"],
            "best_values": best["values"], "seeds": cfg.sweep.seeds}


def versus(point: dict, best: dict) -> dict:
    """``{difference, sd, beyond_noise}`` of a point's mean against the best's (``beyond_noise`` None below two seeds)."""
    diff = point["mean"] - best["mean"]
    if point["sd"] is None or best["sd"] is None:
        return {"difference": diff, "sd": None, "beyond_noise": None}
    sd = math.sqrt((point["sd"] ** 2 + best["sd"] ** 2) / 2)
    return {"difference": diff, "sd": sd, "beyond_noise": abs(diff) > SPREAD_FACTOR * sd}


def item_values(run_dir: str | Path, metric: str) -> tuple[list[str], list[float]] | None:
    """The question ids and per-answer values of ``metric`` for a run's tuned model, recomputed from its answers
    file (``rougeL`` → ``eval/answers.jsonl``; ``sets.<name>.results.rougeL`` → that set's file) with the
    functions the report used; None for any other metric or a missing file."""
    from medtune.evaluate.metrics import bleu_items, rouge_items

    parts = metric.split(".")
    if parts[-1] not in ANSWER_METRICS:
        return None
    if len(parts) == 1:
        set_name = None
    elif len(parts) >= 4 and parts[0] == "sets" and parts[-2] == "results":
        set_name = ".".join(parts[1:-2])
    else:
        return None
    path = answers_path(Path(run_dir) / "eval", set_name)
    if not path.is_file():
        return None
    rows = _answer_rows(path)
    answers, references = [r["finetuned"] for r in rows], [r["reference"] for r in rows]
    values = bleu_items(answers, references) if parts[-1] == "bleu" else [r[parts[-1]] for r in rouge_items(answers, references)]
    return [str(r["id"]) for r in rows], values


def paired_answers(cfg: RunConfig, metric: str, mine: tuple[list[str], list[float]] | None,
                   best: tuple[list[str], list[float]] | None) -> dict | None:
    """A point − the best on ``metric`` over the answers both gave to the same questions (one seed each; both
    ``item_values``): a paired bootstrap ``{difference, ci, significant, n}``; None when the metric is not per
    answer, an answers file is missing, or the questions differ."""
    from medtune.evaluate.bootstrap import paired_difference

    if mine is None or best is None:
        return None
    if mine[0] != best[0]:
        log.warning("sweep: a point answered other questions than the best point; no paired comparison on %s", metric)
        return None
    diff = paired_difference(best[1], mine[1], samples=cfg.eval.bootstrap_samples, seed=cfg.eval.bootstrap_seed)
    return {**diff, "n": len(mine[1])}


def _point_items(rows: list[dict], point: int, metric: str) -> tuple[list[str], list[float]] | None:
    """``item_values`` of a point's (first) run, by the run directory ``run_sweep``'s rows record."""
    run_dir = next((r.get("run_dir") for r in rows if r["point"] == point), None)
    return item_values(run_dir, metric) if run_dir is not None else None


def _answer_rows(path: Path) -> list[dict]:
    """The rows of an answers file (``evaluate.report.write_answers``)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_outputs(cfg: RunConfig, out: Path, rows: list[dict], summary: dict) -> None:
    keys = list(cfg.sweep.grid)
    columns = ["point", "seed", *keys, "steps", *summary["metrics"], "run_dir"]
    with atomic_file(out / "sweep.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    write_json(out / "sweep.json", {"summary": summary, "runs": rows}, indent=2, default=str)
    write_text(out / "sweep.md", summary_markdown(summary))
    best = summary["points"][summary["best"]]
    seed = cfg.sweep.seeds[0] if cfg.sweep.seeds else None
    best_cfg = point_config(cfg, best["values"], seed, cfg.output_dir, f"{cfg.name}_best")
    with atomic_path(out / "best_config.yaml") as tmp:
        dump_config(best_cfg, tmp)
        with open(tmp, "a") as f:
            f.write(f"# best point of sweep {cfg.name}: {yaml.safe_dump(best['values'], default_flow_style=True).strip()} "
                    f"by {summary['metric']} ({'lower' if summary['lower_is_better'] else 'higher'} is better)\n")
    plot(summary, out / "sweep.png")


def cell(c: dict | None) -> str:
    if c is None:
        return "–"
    return f"{c['mean']:.4g}" + (f" ± {c['ci95']:.2g}" if c["ci95"] is not None else "")


def headline_metrics(summary: dict) -> list[str]:
    """The columns read first: final train and eval loss, ``sweep.metric``, and beside it the same question set's
    BERTScore F1 and share of degenerate answers (``sets.<name>.degeneration.degenerate`` for a set's metric)."""
    metric = summary["metric"]
    prefix = metric.rsplit(".", 1)[0] + "." if "." in metric else ""
    beside = prefix.removesuffix("results.")
    wanted = [*FIRST_COLUMNS, metric, f"{prefix}bertscore_f1", f"{beside}degeneration.degenerate"]
    return [m for m in dict.fromkeys(wanted) if m in summary["metrics"]]


def summary_markdown(summary: dict) -> str:
    head = headline_metrics(summary)
    lines = ["# Sweep", "", f"Best point by {summary['metric']} ({'lower' if summary['lower_is_better'] else 'higher'} is better): "
             f"**{summary['points'][summary['best']]['label']}**. Cells: mean ± 95% CI half-width across seeds (Student's t).", ""]
    lines.append(_table(summary, head, versus=True))
    verdicts = [p["vs_best"]["beyond_noise"] for p in summary["points"] if p.get("vs_best")]
    paired = [p["vs_best"]["answers"] for p in summary["points"] if p.get("vs_best") and p["vs_best"].get("answers")]
    if paired and len(paired) == len(verdicts):
        significant = sum(bool(a["significant"]) for a in paired)
        lines += ["", f"One seed per point: each point is compared with the best on the same {paired[0]['n']} answers (paired bootstrap, "
                      f"95% interval; question noise, not seed noise). {significant} of {len(paired)} other points differ significantly."]
    if verdicts and None not in verdicts:
        beyond = sum(verdicts)
        within = "" if beyond == len(verdicts) else "; the others are within it"
        lines += ["", f"{beyond} of {len(verdicts)} other points differ from the best by more than {SPREAD_FACTOR:g}× the seeds' standard "
                      f"deviation on {summary['metric']} (beyond seed noise){within}."]
    rest = [m for m in summary["metrics"] if m not in head]
    if rest:
        lines += ["", "## Every metric", "", _table(summary, rest, versus=False)]
    return "\n".join(lines) + "\n"


def _table(summary: dict, metrics: list[str], versus: bool) -> str:
    rows = [[p["label"] + (" **(best)**" if p["point"] == summary["best"] else ""), *(cell(p["metrics"].get(m)) for m in metrics),
             *([versus_cell(p.get("vs_best"))] if versus else [])] for p in summary["points"]]
    headers = ["point", *metrics, *([f"{summary['metric']} vs best"] if versus else [])]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def versus_cell(v: dict | None) -> str:
    if v is None:
        return "–"
    noise = {True: "beyond seed noise", False: "within seed noise", None: "one seed"}[v["beyond_noise"]]
    answers = v.get("answers")
    if answers and answers.get("ci"):
        lo, hi = answers["ci"]
        noise += f"; paired over {answers['n']} answers [{lo:+.3g}, {hi:+.3g}]" + ("" if answers["significant"] else " n.s.")
    return f"{v['difference']:+.4g} ({noise})"


def plot(summary: dict, path: Path) -> None:
    """One bar chart per metric (final train/eval loss first), a bar per point, CI error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ms = [m for m in summary["metrics"] if not m.startswith("perplexity")][:8]
    fig = Figure(figsize=(4 * min(len(ms), 4), 3.2 * math.ceil(len(ms) / 4)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(math.ceil(len(ms) / 4), min(len(ms), 4), squeeze=False).ravel()
    labels = [p["label"] or f"p{p['point']}" for p in summary["points"]]
    for ax, m in zip(axes, ms, strict=False):  # more axes than metrics: the rest are hidden below
        cells = [p["metrics"].get(m) for p in summary["points"]]
        means = [c["mean"] if c else math.nan for c in cells]
        errors = [c["ci95"] if c and c["ci95"] is not None else 0 for c in cells]
        colors = ["tab:orange" if p["point"] == summary["best"] else "tab:blue" for p in summary["points"]]
        ax.bar(range(len(means)), means, yerr=errors, capsize=3, color=colors)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(m, fontsize=9)
    for ax in axes[len(ms):]:
        ax.set_visible(False)
    fig.suptitle(f"sweep: mean ± 95% CI across seeds (orange = best by {summary['metric']})")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def _label(point: dict) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items())
