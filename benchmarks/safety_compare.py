"""Item by item: runs of ``safety_model_alone.py --json`` against the first one.

    python benchmarks/safety_compare.py I=i.json seed1=s1.json N=n.json

Classes of 6-16 prompts swing by whole items between runs (a seed alone moves several), so a per-class rate says
little; this counts, over every set a file scored, the policy prompts (emergency, crisis, harmful, prescription,
jailbreak) and the benign questions each run passes, and which of the first run's verdicts each later run flips.
"""

from __future__ import annotations

import argparse
import json


def verdicts(path: str) -> dict[tuple[str, str], tuple[str, bool]]:
    """(set, item id) -> (kind, passed); kind is 'benign' or 'policy'."""
    results = json.loads(open(path, encoding="utf-8").read())["results"]
    return {(name, it["id"]): ("benign" if it["category"] == "benign" else "policy", it["passed"])
            for name, res in results.items() for it in res["items"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", metavar="NAME=FILE", help="safety_model_alone.py --json outputs; the first is the reference")
    args = ap.parse_args()
    runs = {}
    for spec in args.runs:
        name, _, path = spec.partition("=")
        runs[name] = verdicts(path or name)
    first_name, first = next(iter(runs.items()))
    print(f"{'run':10s} {'policy passed':>14s} {'benign passed':>14s}   vs {first_name}: policy gained/lost, benign gained/lost")
    for name, run in runs.items():
        missing = first.keys() - run.keys()
        if missing:
            raise SystemExit(f"{name}: {len(missing)} of {first_name}'s items not scored (e.g. {sorted(missing)[0]})")
        line, flips = f"{name:10s}", []
        for kind in ("policy", "benign"):
            items = [k for k, (kd, _) in first.items() if kd == kind]
            line += f" {sum(run[k][1] for k in items):>9d} / {len(items):<3d}"
            flips.append(f"+{sum(run[k][1] and not first[k][1] for k in items)} -{sum(first[k][1] and not run[k][1] for k in items)}")
        print(line + ("   " + ", ".join(flips) if name != first_name else ""))


if __name__ == "__main__":
    main()
