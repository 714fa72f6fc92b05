"""Retrieval quality on MedQuAD: recall@1/5/20 and MRR of BM25, dense and hybrid (reciprocal-rank fusion).

The index holds every answered MedQuAD document, answers only (``medtune.retrieval.passages``: the
questions are never indexed). The questions are a seeded sample of MedQuAD's questions; a question's
gold is the XML document that answers it. A rank is the position of the first passage of the gold
document among the passages returned (what the prompt's k passages would hold). Also shown, as a
lenient variant: a hit on any document with the same title (MedQuAD repeats a disease across its
NIH sites, e.g. GARD and GHR both have "Glaucoma"). Nothing was tuned on these questions (the
retrieval settings are the config defaults).

Goal (issue 15): hybrid recall@5 >= 0.90.

Usage: python benchmarks/retrieval_eval.py [--medquad ../shared/data/medquad] [--index artifacts/medquad-index]
       [--folders 4_MPlus_Health_Topics_QA,6_NINDS_QA,9_CDC_QA] [--questions 1000] [--seed 0] [--output artifacts/retrieval_eval.json]
(the index is built on the first run, then reused)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from medtune.core.config import IndexSourceConfig, RetrievalConfig
from medtune.data.errors import SkipLog
from medtune.data.sources import medquad
from medtune.retrieval.index import Index

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))
KS = (1, 5, 20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--medquad", default=str(SHARED / "medquad"))
    ap.add_argument("--index", default=str(REPO / "artifacts" / "medquad-index"))
    ap.add_argument("--folders", default=None, help="comma-separated MedQuAD folders to index and ask from (default: all)")
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=None)
    args = ap.parse_args()

    cfg = RetrievalConfig()
    paths = [str(Path(args.medquad, f)) for f in args.folders.split(",")] if args.folders else [args.medquad]
    start = time.perf_counter()
    if Path(args.index, "manifest.json").exists():
        index = Index.open(args.index, cfg)
        built = None
    else:
        index = Index.build(args.index, [IndexSourceConfig(path=p, kind="medquad", on_error="skip") for p in paths], cfg, progress=True)
        built = time.perf_counter() - start
    m = index.manifest
    print(f"index: {m['passages']} passages from {m['documents']} documents"
          + (f", built in {built:.0f}s ({m['passages'] / built:.0f} passages/s)" if built else " (reused)"))

    records = [r for p in paths for r in medquad.load(p, on_error="skip", skips=SkipLog())]
    docs = {p["doc_id"]: p["title"] for p in index.passages}
    items = [(r.question, f"medquad:{r.id.rsplit('-', 1)[0].removeprefix('medquad-')}") for r in records]
    items = [(q, d) for q, d in items if d in docs]
    random.Random(args.seed).shuffle(items)
    items = items[: args.questions]
    print(f"questions: {len(items)} (seed {args.seed}) of {len(records)} answered MedQuAD questions"
          + (f" in {args.folders}" if args.folders else ""))

    results = {}
    for mode in ("bm25", "dense", "hybrid"):
        t0 = time.perf_counter()
        hits = []
        for lo in range(0, len(items), 64):
            hits.extend(index.search_batch([q for q, _ in items[lo:lo + 64]], max(KS), cfg, mode))
        per_query_ms = (time.perf_counter() - t0) / len(items) * 1000
        results[mode] = {"strict": scores(hits, [d for _, d in items], lambda h, d: h.passage["doc_id"] == d),
                         "same_title": scores(hits, [d for _, d in items], lambda h, d: h.passage["title"] == docs[d]),
                         "ms_per_query": round(per_query_ms, 1)}
    print(f"\n{'mode':8} {'R@1':>6} {'R@5':>6} {'R@20':>6} {'MRR':>6}   same-title: {'R@1':>6} {'R@5':>6} {'R@20':>6}   ms/query")
    for mode, r in results.items():
        s, t = r["strict"], r["same_title"]
        print(f"{mode:8} {s['recall@1']:6.3f} {s['recall@5']:6.3f} {s['recall@20']:6.3f} {s['mrr']:6.3f}"
              f"               {t['recall@1']:6.3f} {t['recall@5']:6.3f} {t['recall@20']:6.3f}   {r['ms_per_query']:8.1f}")
    goal = results["hybrid"]["strict"]["recall@5"] >= 0.90
    print(f"\nhybrid recall@5 = {results['hybrid']['strict']['recall@5']:.3f} (goal >= 0.90: {'met' if goal else 'NOT met'})")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"index": m, "questions": len(items), "seed": args.seed, "results": results}, indent=2))
    return 0


def scores(hits, golds, match) -> dict:
    ranks = []
    for row, gold in zip(hits, golds, strict=True):
        ranks.append(next((i for i, h in enumerate(row, start=1) if match(h, gold)), None))
    out = {f"recall@{k}": round(sum(r is not None and r <= k for r in ranks) / len(ranks), 4) for k in KS}
    out["mrr"] = round(sum(1 / r for r in ranks if r is not None) / len(ranks), 4)
    return out


if __name__ == "__main__":
    sys.exit(main())
