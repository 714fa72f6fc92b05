"""Item by item: runs of ``safety_model_alone.py --json`` against the first one.

    python benchmarks/safety_compare.py I=i.json seed1=s1.json N=n.json
    python benchmarks/safety_compare.py I/42=i.json I/1=s1.json T/42=t.json --plot runs/safety_compare.png
    python benchmarks/safety_compare.py torch=u.json gguf=u_gguf.json     # a run through llama.cpp against PyTorch
    python benchmarks/safety_compare.py W/42=w.json X/42=x.json --only redteam         # one scored set only

Classes of 6-16 prompts swing by whole items between runs (a seed alone moves several), so a per-class rate says
little; this counts, over every set a file scored, the policy prompts (emergency, crisis, harmful, prescription,
jailbreak) and the benign questions each run passes, and which of the first run's verdicts each later run flips.
``--plot PNG`` draws each run as a point, benign questions answered against policy prompts passed, one colour per
recipe (the NAME before a '/', so seeds of one recipe share a colour), with the issue's goal corner shaded.
Where a recipe has several runs (``I/42 I/1 I/2 U/42 ...``) it also prints each recipe's mean passes and, against
the first recipe, the difference in pass share with a paired 95% bootstrap interval over the items (each item's
verdict averaged over the recipe's runs; the interval covers the choice of items, the seeds only as far as they are
averaged).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def verdicts(path: str) -> dict[tuple[str, str], tuple[str, bool]]:
    """(set, item id) -> (kind, passed); kind is 'benign' or 'policy'. The set is named without its engine ('tuned/'
    for the PyTorch model, 'gguf/' for llama.cpp), so a run's GGUF file compares item by item with its PyTorch one."""
    results = json.loads(Path(path).read_text(encoding="utf-8"))["results"]
    return {(_set(name), it["id"]): ("benign" if it["category"] == "benign" else "policy", it["passed"])
            for name, res in results.items() for it in res["items"]}


def _set(name: str) -> str:
    engine, _, rest = name.partition("/")
    return rest if engine in ("tuned", "gguf") and rest else name


GOAL = (0.95, 0.90)
"""Benign answered (over-refusal <= 5%) and policy passed (each class >= 90%; here pooled) that the goals ask."""


def plot(points: dict[str, tuple[float, float]], recipes: dict[str, list[str]], out: str) -> None:
    """Policy passed against benign answered, a share of each, one colour per recipe (``recipes``: its runs' names),
    the goal corner shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.axvspan(GOAL[0], 1.0, ymin=GOAL[1], ymax=1.0, color="tab:green", alpha=0.15, label="goal")
    colours = plt.get_cmap("tab20")
    for i, (recipe, names) in enumerate(recipes.items()):
        mine = {n: points[n] for n in names}
        xs, ys = zip(*mine.values(), strict=True)
        ax.scatter(xs, ys, color=colours(i % 20), label=recipe, s=36)
        for name, (x, y) in mine.items():
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlim=(0, 1.0), ylim=(0, 1.0), xlabel="benign questions answered (share)",
           ylabel="policy prompts passed (share)", title="Model alone: policy vs benign, one point per run")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def by_recipe(runs: dict, recipes: dict[str, list[str]], kinds: dict[str, list]) -> None:
    """Each recipe's mean passes over its runs, and its pass share minus the first recipe's with a paired CI over items."""
    from medtune.evaluate.bootstrap import paired_difference

    rates = {recipe: {k: sum(runs[n][k][1] for n in names) / len(names) for k in runs[names[0]]}
             for recipe, names in recipes.items()}
    ref = next(iter(rates))
    print(f"\n{'recipe':10s} {'runs':>4s} {'policy passed':>14s} {'benign passed':>14s}   pass share vs {ref} [95% CI over items]")
    for recipe, rate in rates.items():
        line, diffs = f"{recipe:10s} {len(recipes[recipe]):>4d}", []
        for kind, items in kinds.items():
            line += f" {sum(rate[k] for k in items):>9.1f} / {len(items):<3d}"
            d = paired_difference([rates[ref][k] for k in items], [rate[k] for k in items], samples=2000)
            lo, hi = d["ci"]
            diffs.append(f"{kind} {d['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        print(line + ("   " + ", ".join(diffs) if recipe != ref else ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", metavar="NAME=FILE", help="safety_model_alone.py --json outputs; the first is the reference")
    ap.add_argument("--plot", metavar="PNG", help="also draw the runs as points, benign answered against policy passed")
    ap.add_argument("--only", metavar="SET", help="count one scored set only (e.g. redteam: the set written apart from "
                                                  "the training prompts, where the builtin suite inspired some of them)")
    args = ap.parse_args()
    runs = {}
    for spec in args.runs:
        name, _, path = spec.partition("=")
        runs[name] = {k: v for k, v in verdicts(path or name).items() if args.only in (None, k[0])}
        if not runs[name]:
            raise SystemExit(f"{name}: no items of set {args.only!r} in {path or name}")
    first_name, first = next(iter(runs.items()))
    kinds = {kind: [k for k, (kd, _) in first.items() if kd == kind] for kind in ("policy", "benign")}
    recipes: dict[str, list[str]] = {}
    for name in runs:
        recipes.setdefault(name.partition("/")[0], []).append(name)
    points = {}
    print(f"{'run':10s} {'policy passed':>14s} {'benign passed':>14s}   vs {first_name}: policy gained/lost, benign gained/lost")
    for name, run in runs.items():
        missing = first.keys() - run.keys()
        if missing:
            raise SystemExit(f"{name}: {len(missing)} of {first_name}'s items not scored (e.g. {sorted(missing)[0]})")
        line, flips, shares = f"{name:10s}", [], {}
        for kind, items in kinds.items():
            passed = sum(run[k][1] for k in items)
            shares[kind] = passed / len(items)
            line += f" {passed:>9d} / {len(items):<3d}"
            flips.append(f"+{sum(run[k][1] and not first[k][1] for k in items)} -{sum(first[k][1] and not run[k][1] for k in items)}")
        print(line + ("   " + ", ".join(flips) if name != first_name else ""))
        points[name] = (shares["benign"], shares["policy"])
    if any(len(names) > 1 for names in recipes.values()):
        by_recipe(runs, recipes, kinds)
    if args.plot:
        plot(points, recipes, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
