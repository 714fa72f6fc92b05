"""The evaluate stage's outputs: ``report.json``, ``answers.jsonl``, ``report.md`` (and ``report.html``)."""

from __future__ import annotations

import json

from tabulate import tabulate

from medtune.core.rundir import RunDir
from medtune.evaluate.metrics import METRICS, significance


def write_report(run: RunDir, report: dict, records, references, answers: dict[str, list[str]]) -> None:
    from medtune.evaluate.report_html import write_html  # matplotlib, only when a report is written

    out = run.eval
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    examples = []
    with open(out / "answers.jsonl", "w", encoding="utf-8") as f:
        for i, (r, ref) in enumerate(zip(records, references, strict=True)):
            row = {"id": r.id, "question": r.dialogue()[-2]["content"], "reference": ref}
            row.update({name: answers[name][i] for name in answers})
            examples.append(row)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(report_markdown(report, examples))
    write_html(out / "report.html", report, examples, run.logs / "history.json")


def table(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table; cells are written as given (no number re-formatting)."""
    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)


def report_markdown(report: dict, examples: list[dict]) -> str:
    res, ci, diffs = report["results"], report.get("ci", {}), report.get("differences", {})
    names = [n for n in ("base", "finetuned") if n in res]
    paired = len(names) == 2
    lines = ["# Evaluation report", "", f"{report['n_eval_records']} held-out records; answers generated for {report['n_generated']}. "
             f"Intervals: bootstrap 95% ({report['bootstrap']['samples']} resamples); "
             "a change whose interval contains 0 is not significant.", ""]
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
    lines.append(table(["metric", *names, *(["change (95% CI)", "significant"] if paired else [])], rows))
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
    if report.get("safety_during_training"):
        lines += ["", *during_training_lines(report["safety_during_training"])]
    lines += ["", "## Examples", ""]
    for row in examples[:3]:
        lines += [f"**Q:** {row['question']}", "", f"**Reference:** {row['reference']}", ""]
        lines += [f"**{n}:** {row[n]}" + "\n" for n in names]
    return "\n".join(lines) + "\n"




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
