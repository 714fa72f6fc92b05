"""Seed variance: the same run trained once per seed, and whether base → tuned is more than seed noise.

``train.seeds: [1, 2, 3]`` (or ``medtune run --seeds 3``) is a sweep with no grid and those seeds
(``sweep.run_sweep``: one pipeline, each seed an ordinary run directory under
``output_dir/name/points/``, one prepared data set shared). On top of the sweep's files this writes
``seeds.md`` / ``seeds.json``: per question set (the held-out split and each ``eval.sets`` set) and
metric, the base value, the tuned mean ± standard deviation across seeds, the mean gain and its
95% interval across seeds (Student's t), and ``exceeds_spread``: whether the mean gain is larger
than twice the seeds' standard deviation (the gain is not an accident of one seed).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from tabulate import tabulate

from medtune.core.atomic import write_json, write_text
from medtune.core.config import RunConfig, SweepConfig
from medtune.training.pipeline import Events

GAIN_METRICS = ("rougeL", "bleu", "bertscore_f1", "eval_loss")
SPREAD_FACTOR = 2.0
"""A gain exceeds the seed spread when |mean gain| > SPREAD_FACTOR × the seeds' standard deviation."""


def seed_list(cfg: RunConfig, count: int | None = None) -> list[int]:
    """``train.seeds``, or ``count`` seeds from ``train.seed`` on (``--seeds N``)."""
    if count:
        return [cfg.train.seed + i for i in range(count)]
    return list(cfg.train.seeds)


def run_seeds(cfg: RunConfig, seeds: list[int], events: Events | None = None) -> dict:
    """Train and evaluate ``cfg`` once per seed (through ``sweep.run_sweep``); write seeds.md/json; return the summary."""
    from medtune.training.sweep import run_sweep

    if len(seeds) < 2:
        raise ValueError(f"seed variance needs at least two seeds, got {seeds}")
    sweep = cfg.model_copy(update={"sweep": SweepConfig(seeds=seeds, metric="rougeL"),
                                   "train": cfg.train.model_copy(update={"seeds": []})})
    summary = run_sweep(sweep, events)
    runs = json.loads((cfg.run_dir / "sweep.json").read_text())["runs"]
    reports = [json.loads((Path(r["run_dir"]) / "eval" / "report.json").read_text()) for r in runs]
    out = {"seeds": seeds, "sets": spread(reports), "sweep": summary}
    write_json(cfg.run_dir / "seeds.json", out, indent=2)
    write_text(cfg.run_dir / "seeds.md", seeds_markdown(out))
    return out


def spread(reports: list[dict]) -> dict[str, list[dict]]:
    """``{set: [row per metric]}`` over one evaluation report per seed (see the module docstring)."""
    from scipy import stats

    sets = {"held-out": reports}
    for name in reports[0].get("sets", {}):
        sets[name] = [r["sets"][name] for r in reports]
    out = {}
    for name, entries in sets.items():
        rows = []
        for m in GAIN_METRICS:
            if any(m not in e["results"].get("finetuned", {}) or m not in e.get("differences", {}) for e in entries):
                continue
            tuned = [e["results"]["finetuned"][m] for e in entries]
            gains = [e["differences"][m]["difference"] for e in entries]
            sd = statistics.stdev(tuned)
            half = stats.t.ppf(0.975, len(gains) - 1) * statistics.stdev(gains) / math.sqrt(len(gains))
            gain = statistics.fmean(gains)
            rows.append({"metric": m, "base": statistics.fmean(e["results"]["base"][m] for e in entries),
                         "tuned_mean": statistics.fmean(tuned), "tuned_sd": sd, "gain": gain, "gain_ci": [gain - half, gain + half],
                         "exceeds_spread": abs(gain) > SPREAD_FACTOR * sd, "n": len(entries)})
        degenerate = [e.get("degeneration", {}).get("finetuned", {}).get("degenerate") for e in entries]
        if all(d is not None for d in degenerate):
            rows.append({"metric": "degenerate (share)", "base": entries[0]["degeneration"]["base"]["degenerate"],
                         "tuned_mean": statistics.fmean(degenerate), "tuned_sd": statistics.stdev(degenerate), "gain": None,
                         "gain_ci": None, "exceeds_spread": None, "n": len(entries)})
        out[name] = rows
    return out


def seeds_markdown(out: dict) -> str:
    lines = ["# Seed variance", "", f"Seeds: {', '.join(map(str, out['seeds']))}. Tuned: mean ± standard deviation across seeds; "
             f"gain: mean tuned − base with its 95% interval across seeds (Student's t); the gain exceeds the seed spread when "
             f"|gain| > {SPREAD_FACTOR:g} × the standard deviation.", ""]
    for name, rows in out["sets"].items():
        table = [[r["metric"], f"{r['base']:.4f}", f"{r['tuned_mean']:.4f} ± {r['tuned_sd']:.4f}",
                  "–" if r["gain"] is None else f"{r['gain']:+.4f} [{r['gain_ci'][0]:+.4f}, {r['gain_ci'][1]:+.4f}]",
                  {True: "yes", False: "no", None: "–"}[r["exceeds_spread"]]] for r in rows]
        lines += [f"## {name}", "", tabulate(table, headers=["metric", "base", "tuned (mean ± sd)", "gain (95% CI)",
                                                             "exceeds seed spread"], tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines)
