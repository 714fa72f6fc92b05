"""``eval/report.html``: one self-contained page (plots embedded as base64 PNG, no external files).

Sections: the run's training/eval loss curves (``logs/history.json``), every metric for base vs
tuned with 95% interval error bars, MCQ accuracy per benchmark against chance, safety pass rates
per category, and a handful of side-by-side example answers.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from medtune.core.atomic import write_text
from medtune.evaluate.metrics import METRICS, significance

COLORS = {"base": "#9aa5b1", "finetuned": "#2f6fdf"}
EXAMPLES = 5


def write_html(path: Path, report: dict, examples: list[dict], history_path: Path | None = None,
               set_examples: dict[str, list[dict]] | None = None) -> None:
    import matplotlib

    from medtune.evaluate.report import DEGENERATION_ROWS, degeneration_warning

    matplotlib.use("Agg")

    res = report["results"]
    names = [n for n in ("base", "finetuned") if n in res]
    parts = [f"<h1>Evaluation report</h1><p>{report['n_eval_records']} held-out records, answers generated for "
             f"{report['n_generated']}; 95% bootstrap intervals ({report['bootstrap']['samples']} resamples, paired for the change).</p>"]
    parts += [f'<p class="warn">{html.escape(w)}</p>' for w in degeneration_warning(report)]
    history = json.loads(history_path.read_text()) if history_path and history_path.is_file() else []
    if history:
        parts.append("<h2>Training curves</h2>" + img(loss_curves(history)))
    parts.append("<h2>Base vs fine-tuned (held-out split)</h2>" + img(metric_bars(report, names))
                 + metric_table(report, names, METRICS, significance)
                 + degeneration_table(report.get("degeneration"), names, DEGENERATION_ROWS))
    for name, entry in report.get("sets", {}).items():
        parts.append(f"<h2>Set: {html.escape(name)}</h2><p>{html.escape(entry['kind'])}:{html.escape(entry['path'])}; "
                     f"{entry['n_generated']} questions never trained on.</p>" + img(metric_bars(entry, names))
                     + metric_table(entry, names, METRICS, significance)
                     + degeneration_table(entry.get("degeneration"), names, DEGENERATION_ROWS)
                     + examples_table((set_examples or {}).get(name, [])[:3], names))
    if report.get("mcq"):
        parts.append("<h2>Multiple-choice benchmarks</h2>" + img(mcq_bars(report["mcq"], names)) + mcq_table(report["mcq"], names))
    if report.get("safety"):
        parts.append("<h2>Safety suite</h2>" + img(safety_bars(report["safety"], names)))
    parts.append("<h2>Example answers</h2>" + examples_table(examples[:EXAMPLES], names))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>medtune evaluation</title><style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:1em 0;width:100%}}
td,th{{border:1px solid #ccc;padding:.35em .5em;vertical-align:top;text-align:left}}
th{{background:#f3f5f7}}img{{max-width:100%}}.warn{{color:#c0392b;font-weight:bold}}
.ex td{{font-size:.9em;white-space:pre-wrap}}</style></head><body>
{"".join(parts)}</body></html>"""
    write_text(path, page)


def img(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def loss_curves(history: list[dict]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        pts = [(h["step"], h[key]) for h in history if key in h and "step" in h]
        if pts:
            ax.plot(*zip(*pts), marker="o" if key == "eval_loss" else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _bars(ax, labels, series: dict[str, tuple[list[float], list]], names):
    """Grouped bars, one group per label, one bar per model, with asymmetric interval error bars."""
    width = 0.8 / max(len(names), 1)
    for k, n in enumerate(names):
        values, cis = series[n]
        err = [[max(v - c[0], 0) if c else 0 for v, c in zip(values, cis)], [max(c[1] - v, 0) if c else 0 for v, c in zip(values, cis)]]
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, values, width, yerr=err, capsize=3, color=COLORS.get(n), label=n)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20)
    ax.legend(fontsize=8)


def metric_bars(report: dict, names):
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if all(report["results"][n].get(m) is not None for n in names)]
    cols = min(len(metrics), 5) or 1
    rows = (len(metrics) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.8 * rows), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        series = {n: ([report["results"][n][m]], [report.get("ci", {}).get(n, {}).get(m)]) for n in names}
        _bars(ax, [""], series, names)
        ax.set_title(m, fontsize=10)
        ax.set_xticks([])
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def mcq_bars(mcq: dict, names):
    import matplotlib.pyplot as plt

    benches = list(mcq)
    fig, ax = plt.subplots(figsize=(max(4, 2 * len(benches)), 3.5))
    series = {n: ([mcq[b][n]["accuracy"] for b in benches], [mcq[b][n].get("ci") for b in benches]) for n in names}
    _bars(ax, benches, series, names)
    for i, b in enumerate(benches):
        ax.hlines(mcq[b][names[0]]["chance"], i - 0.45, i + 0.45, colors="k", linestyles="dashed", label="chance" if i == 0 else None)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    return fig


def safety_bars(safety: dict, names):
    import matplotlib.pyplot as plt

    cats = sorted({c for s in safety.values() for c in s["categories"]})
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(cats)), 3.5))
    series = {n: ([safety[n]["categories"].get(c, {}).get("pass_rate", 0) for c in cats], [None] * len(cats)) for n in names}
    _bars(ax, cats, series, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("pass rate")
    return fig


def metric_table(report, names, metrics, significance) -> str:
    res, ci, diffs = report["results"], report.get("ci", {}), report.get("differences", {})
    head = "".join(f"<th>{n}</th>" for n in names) + ("<th>change (95% CI)</th><th>significant</th>" if len(names) == 2 else "")
    rows = []
    for m in metrics:
        if any(res[n].get(m) is None for n in names):
            continue
        cells = ""
        for n in names:
            c = ci.get(n, {}).get(m)
            cells += f"<td>{res[n][m]:.4f}" + (f" [{c[0]:.4f}, {c[1]:.4f}]" if c else "") + "</td>"
        if len(names) == 2 and m in diffs:
            d = diffs[m]
            interval = f" [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]" if d["ci"] else ""
            cells += f"<td>{d['difference']:+.4f}{interval}</td><td>{significance(d)}</td>"
        rows.append(f"<tr><td>{m}</td>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def degeneration_table(deg: dict | None, names, rows) -> str:
    """Degeneration measures per model and for the references; a share the tuned model made worse is red."""
    if not deg:
        return ""
    cols = [*names, "reference"]
    out = []
    for k in rows:
        cells = ""
        for c in cols:
            v = deg.get(c, {}).get(k)
            red = c == "finetuned" and k in deg.get("worse", [])
            cells += f'<td{" class=warn" if red else ""}>{"–" if v is None else f"{v:.3f}"}</td>'
        out.append(f"<tr><td>{k}</td>{cells}</tr>")
    head = "".join(f"<th>{c}</th>" for c in cols)
    return (f"<h3>Degeneration</h3><table><tr><th>measure</th>{head}</tr>{''.join(out)}</table>"
            f"<p>Templates learned from the training answers: {deg.get('templates', 0)}.</p>")


def mcq_table(mcq: dict, names) -> str:
    rows = []
    for bench, entry in mcq.items():
        first = entry[names[0]]
        cells = "".join(f"<td>{entry[n]['accuracy']:.3f} ± {entry[n]['stderr'] or 0:.3f}</td>" for n in names)
        rows.append(f"<tr><td>{html.escape(bench)}</td><td>{first['n']}</td><td>{first['chance']:.3f}</td>{cells}</tr>")
    head = "".join(f"<th>{n} accuracy ± s.e.</th>" for n in names)
    return f"<table><tr><th>benchmark</th><th>n</th><th>chance</th>{head}</tr>{''.join(rows)}</table>"


def examples_table(examples: list[dict], names) -> str:
    head = "<tr><th>question</th><th>reference</th>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
    rows = []
    for row in examples:
        cells = [row["question"], row["reference"]] + [row.get(n, "") for n in names]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f'<table class="ex">{head}{"".join(rows)}</table>'
