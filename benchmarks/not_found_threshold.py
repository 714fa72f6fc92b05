"""The not-found threshold (``retrieval.threshold``): how often questions the index answers, and questions it
does not, find a passage at or above each threshold.

A grounded answer is only as good as its passages: below the threshold the answer path says "not found";
above it the model answers from the best passages, relevant or not, and a model tuned on the rag template
copies them. For each threshold this prints the share of "found" among a seeded sample of MedQuAD questions from
collections the index holds (should stay near 1) and from collections it does not hold (should fall: each one
found there is answered from another topic's passages, unless the collections share the topic).

Usage: python benchmarks/not_found_threshold.py --config configs/quality.yaml [--index DIR]
       [--inside 5_NIDDK_QA] [--outside 1_CancerGov_QA,2_GARD_QA,3_GHR_QA,6_NINDS_QA] [--n 100] [--seed 1]
       [--exclude-answers runs/quality/eval/answers_niddk__held-out_source_.jsonl]  # questions an eval already used
(the index is the config's retrieval.index, built with `medtune index CONFIG --out DIR` or by the recipe's run)
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

from medtune.core.config import load_config
from medtune.data.errors import SkipLog
from medtune.data.sources import medquad
from medtune.retrieval import Retriever

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))
THRESHOLDS = (0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65)


def sample(folder: str, n: int, seed: int, exclude: set[str]) -> list[str]:
    questions = [r.question for r in medquad.load(str(SHARED / "medquad" / folder), on_error="skip", skips=SkipLog())
                 if r.question not in exclude]
    random.Random(seed).shuffle(questions)
    return questions[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--index", default=None)
    ap.add_argument("--inside", default="5_NIDDK_QA")
    ap.add_argument("--outside", default="1_CancerGov_QA,2_GARD_QA,3_GHR_QA,6_NINDS_QA")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exclude-answers", default=None, help="an answers_*.jsonl whose questions are left out of the samples")
    args = ap.parse_args()

    cfg = load_config(args.config, [f"retrieval.index={args.index}"] if args.index else [])
    retriever = Retriever(cfg.retrieval)
    exclude = set()
    if args.exclude_answers:
        exclude = {json.loads(line)["question"] for line in Path(args.exclude_answers).read_text().splitlines() if line.strip()}
    groups = {f"in the index: {f}": f for f in args.inside.split(",")} | {f"not in the index: {f}": f for f in args.outside.split(",")}
    best = {name: [retriever.ground(q).best for q in sample(folder, args.n, args.seed, exclude)] for name, folder in groups.items()}
    print(f"index {cfg.retrieval.index}; share of questions found (best passage >= threshold), {args.n} per collection, seed {args.seed}")
    width = max(len(name) for name in best)
    print(" " * width + "".join(f"{t:>7.2f}" for t in THRESHOLDS))
    for name, scores in best.items():
        print(f"{name:<{width}}" + "".join(f"{sum(s is not None and s >= t for s in scores) / len(scores):>7.2f}" for t in THRESHOLDS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
