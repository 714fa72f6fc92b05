"""MCQ accuracy of a model on seeded samples of MedQA, MedMCQA and PubMedQA (../shared/data).

    python benchmarks/mcq_accuracy.py [--model smollm2-135m-instruct] [--limit 200] [--mode loglik] [--out FILE]

Prints accuracy ± standard error, the bootstrap 95% interval, the chance level and seconds per
benchmark (log-likelihood scoring of the answer letters, lm-eval's zero-shot convention).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DATA = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def benchmarks(limit: int):
    from medtune.core.config import MCQBenchmark

    return [
        MCQBenchmark(name="medqa", path=str(DATA / "mcq/medqa.test.jsonl"), limit=limit),
        MCQBenchmark(name="medmcqa", path=str(DATA / "mcq/medmcqa.test.jsonl"), limit=limit),
        MCQBenchmark(name="pubmedqa", kind="pubmedqa", path=str(DATA / "pubmedqa/ori_pqal.json"),
                     only_ids=str(DATA / "pubmedqa/test_ground_truth.json"), limit=limit),
    ]


def main() -> None:
    from medtune.evaluate.mcq import score_model
    from medtune.inference.loading import load_generator

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--mode", default="loglik", choices=["loglik", "generate", "both"])
    ap.add_argument("--bench", nargs="*", default=None, help="subset of medqa medmcqa pubmedqa")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    generator, cfg = load_generator(args.model, quantization="none")
    benches = [b for b in benchmarks(args.limit) if not args.bench or b.name in args.bench]
    results = {}
    for bench in benches:
        results.update(score_model(generator, cfg.generation, [bench], args.mode, batch_size=8))
        r = results[bench.name]
        line = (f"{bench.name:9s} n={r['n']:4d} accuracy {r['accuracy']:.3f} ± {r['stderr']:.3f} "
                f"(95% CI {r['ci'][0]:.3f}–{r['ci'][1]:.3f}) chance {r['chance']:.3f}  {r['seconds']:.0f}s")
        if "generate" in r:
            g = r["generate"]
            line += f"  | generate {g['accuracy']:.3f} ± {g['stderr']:.3f}, unparseable {g['unparseable_rate']:.1%}"
        elif "unparseable_rate" in r:
            line += f"  unparseable {r['unparseable_rate']:.1%}"
        print(line, flush=True)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
