"""The evaluate stage's outputs: ``report.json``, ``answers.jsonl``, ``report.md`` (and ``report.html``)."""

from __future__ import annotations

import json
from pathlib import Path

from tabulate import tabulate

from medtune.core.atomic import atomic_file, write_json, write_text
from medtune.core.rundir import RunDir
from medtune.evaluate.degeneration import SHARES
from medtune.evaluate.metrics import METRICS, significance


def write_report(run: RunDir, report: dict, records, references, answers: dict[str, list[str]], sets: dict | None = None) -> None:
    """``sets``: ``{name: (records, references, answers)}`` of the external sets (``answers_<name>.jsonl``)."""
    from medtune.evaluate.report_html import write_html  # matplotlib, only when a report is written

    out = run.eval
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report, indent=2)
    examples = write_answers(answers_path(out), records, references, answers)
    set_examples = {name: write_answers(answers_path(out, name), *parts) for name, parts in (sets or {}).items()}
    write_text(out / "report.md", report_markdown(report, examples, set_examples))
    write_html(out / "report.html", report, examples, run.logs / "history.json", set_examples)


def write_answers(path, records, references, answers: dict[str, list[str]]) -> list[dict]:
    rows = []
    with atomic_file(path) as f:
        for i, (r, ref) in enumerate(zip(records, references, strict=True)):
            row = {"id": r.id, "question": r.dialogue()[-2]["content"], "reference": ref}
            row.update({name: answers[name][i] for name in answers})
            rows.append(row)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows


def answers_path(eval_dir: Path, set_name: str | None = None) -> Path:
    """Where the answers of the held-out split (``answers.jsonl``) or of the external set ``set_name``
    (``answers_<name>.jsonl``, the name with anything but letters, digits, ``-_.`` as ``_``) are written."""
    if set_name is None:
        return eval_dir / "answers.jsonl"
    return eval_dir / ("answers_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in set_name) + ".jsonl")


def degeneration_warning(report: dict) -> list[str]:
    """One line per question set where the tuned model degenerates more than its base (empty: none)."""
    out = []
    for label, entry in [("held-out split", report), *((f"set {n}", e) for n, e in report.get("sets", {}).items())]:
        deg = entry.get("degeneration", {})
        if deg.get("worse"):
            parts = ", ".join(f"{k} {deg['base'][k]:.0%} → {deg['finetuned'][k]:.0%}" for k in deg["worse"])
            out.append(f"The tuned model degenerates more than its base on the {label}: {parts}.")
    return out


def table(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table; cells are written as given (no number re-formatting)."""
    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)


def report_markdown(report: dict, examples: list[dict], set_examples: dict[str, list[dict]] | None = None) -> str:
    names = [n for n in ("base", "finetuned") if n in report["results"]]
    lines = ["# Evaluation report", "", f"{report['n_eval_records']} held-out records; answers generated for {report['n_generated']}. "
             f"Intervals: bootstrap 95% ({report['bootstrap']['samples']} resamples); "
             "a change whose interval contains 0 is not significant.", ""]
    lines += [f"**Warning: {w}**" for w in degeneration_warning(report)]
    lines += ["", "## Held-out split", "", metrics_markdown(report, names), "", "### Degeneration", "",
              degeneration_markdown(report.get("degeneration"), names)]
    for name, entry in report.get("sets", {}).items():
        left = entry.get("left_out", {})
        lines += ["", f"## Set: {name}", "", f"{entry['kind']}:{entry['path']}; answers generated for {entry['n_generated']} questions "
                  f"({left.get('loaded', '?')} loaded, {left.get('in_training', 0)} left out as training questions).", "",
                  metrics_markdown(entry, names), "", "### Degeneration", "", degeneration_markdown(entry.get("degeneration"), names)]
        for row in (set_examples or {}).get(name, [])[:2]:
            lines += ["", f"**Q:** {row['question']}", "", f"**Reference:** {row['reference']}", ""]
            lines += [f"**{n}:** {row[n]}" + "\n" for n in names]
    if report.get("mcq"):
        rows = []
        for bench, entry in report["mcq"].items():
            first = entry[names[0]]
            accuracy = [f"{entry[n]['accuracy']:.3f} ± {entry[n]['stderr'] or 0:.3f}" for n in names]
            rows.append([bench, first["n"], f"{first['chance']:.3f}", *accuracy])
        lines += ["", "## Multiple-choice benchmarks", "", table(["benchmark", "n", "chance", *names], rows)]
    if report.get("safety"):
        cats = sorted({c for s in report["safety"].values() for c in s["categories"]})
        rows = []
        for c in cats + ["all"]:
            suites = [report["safety"][n] for n in names]
            vals = [s["pass_rate"] if c == "all" else s["categories"].get(c, {}).get("pass_rate") for s in suites]
            rows.append([c, *("–" if v is None else f"{v:.0%}" for v in vals)])
        lines += ["", "## Safety suite (pass rate)", "", table(["category", *names], rows)]
    lines += ["", "## Examples (held-out split)", ""]
    if report.get("safety_during_training"):
        lines += ["", *during_training_lines(report["safety_during_training"])]
    lines += ["", "## Examples", ""]
    for row in examples[:3]:
        lines += [f"**Q:** {row['question']}", "", f"**Reference:** {row['reference']}", ""]
        lines += [f"**{n}:** {row[n]}" + "\n" for n in names]
    return "\n".join(lines) + "\n"


def metrics_markdown(entry: dict, names: list[str]) -> str:
    """Every metric of one question set: value [CI] per model, the change [CI] and its significance."""
    res, ci, diffs = entry["results"], entry.get("ci", {}), entry.get("differences", {})
    paired = len(names) == 2
    rows = []
    for m in METRICS:
        if any(res[n].get(m) is None for n in names):
            continue
        row = [m]
        for n in names:
            c = ci.get(n, {}).get(m)
            row.append(f"{res[n][m]:.4f}" + (f" [{c[0]:.4f}, {c[1]:.4f}]" if c else ""))
        if paired and m in diffs:
            d = diffs[m]
            interval = f" [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]" if d["ci"] else ""
            row += [f"{d['difference']:+.4f}{interval}", significance(d)]
        rows.append(row)
    return table(["metric", *names, *(["change (95% CI)", "significant"] if paired else [])], rows)


DEGENERATION_ROWS = (*SHARES, "distinct_1", "distinct_2", "ends_on_eos", "mean_words", "length_ratio")


def degeneration_markdown(deg: dict | None, names: list[str]) -> str:
    """Degeneration measures per model and for the references (lower is better for the ``SHARES``)."""
    if not deg:
        return "(none)"
    cols = [*names, "reference"]
    rows = []
    for k in DEGENERATION_ROWS:
        cells = [_fmt(deg.get(c, {}).get(k)) for c in cols]
        d = deg.get("differences", {}).get(k)
        change = "" if d is None else f"{d['difference']:+.2f}" + (f" [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]" if d["ci"] else "")
        rows.append([k, *cells, change])
    learned = f"\n\nTemplates learned from the training answers: {deg.get('templates', 0)}."
    return table(["measure", *cols, "change (95% CI)"], rows) + learned


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def during_training_lines(record: dict) -> list[str]:
    """The model-alone safety scored while training: base, then each scored step; a drop below the base is flagged."""
    base = record["base"]
    rows = [["base", f"{base['pass_rate']:.0%}", ""]] if base else []
    rows += [[f"step {p['step']}", f"{p['pass_rate']:.0%}", "**below the base**" if p["below_base"] else ""] for p in record["points"]]
    flag = ("**Flagged: model-alone safety fell below the base during training.**" if record["flagged"]
            else "Model-alone safety never fell below the base.")
    return ["## Model-alone safety during training", "",
            f"{record['n']} suite prompts ({record['per_category']} per category), guardrails off. {flag}", "",
            table(["model", "pass rate", ""], rows)]
