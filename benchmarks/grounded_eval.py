"""Grounded vs ungrounded generation: the same model and questions, with and without retrieval.

Two question sets (``medtune.evaluate.grounded.compare_grounding`` for each: ROUGE-L and BERTScore F1 with
paired-bootstrap 95% intervals, not-found rate, sources listed, citation checks):

* **in the index**: a seeded sample of MedQuAD questions from the folders the index was built from
  (``benchmarks/retrieval_eval.py`` builds one), reference = MedQuAD's answer. A run directory's own
  training questions are left out, so these were never trained on. Goal (issue 15): ROUGE-L +0.10 or
  more, significant.
* **not in the index**: GenMedGPT patient questions (``../shared/data/genmedgpt``), reference = the
  dialogue's doctor answer. Grounding must not make these worse (interval), and the not-found rate shows
  how often retrieval said so.

Usage: python benchmarks/grounded_eval.py --index artifacts/medquad3-index [--model smollm2-135m-instruct|RUN_DIR]
       [--folders 4_MPlus_Health_Topics_QA,6_NINDS_QA,9_CDC_QA] [--n 30] [--max-new-tokens 96] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from medtune.core.config import load_config
from medtune.core.rundir import RunDir
from medtune.data.errors import SkipLog
from medtune.data.records import read_jsonl
from medtune.data.sources import chatdoctor, medquad
from medtune.evaluate.grounded import compare_grounding
from medtune.inference.loading import load_generator

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--folders", default="4_MPlus_Health_Topics_QA,6_NINDS_QA,9_CDC_QA")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=None)
    args = ap.parse_args()

    cfg = load_config(None, [f"retrieval.index={args.index}", f"eval.max_new_tokens={args.max_new_tokens}", "eval.temperature=0",
                             "generation.batch_size=4"])
    generator, cfg = load_generator(args.model, quantization="none", cfg=cfg)
    trained = set()
    if RunDir(args.model).is_run():
        trained = {r.question for r in read_jsonl(RunDir(args.model).data / "train.jsonl")}
    inside = [r for f in args.folders.split(",") for r in medquad.load(str(SHARED / "medquad" / f), on_error="skip", skips=SkipLog())
              if r.question not in trained]
    outside = chatdoctor.load(str(SHARED / "genmedgpt" / "chatdoctor5k.json"), on_error="skip", skips=SkipLog())
    results = {}
    for name, records in (("in the index", inside), ("not in the index", outside)):
        sample = random.Random(args.seed).sample(records, min(args.n, len(records)))
        result = compare_grounding(generator, cfg, [r.question for r in sample], [r.answer for r in sample], progress=True)
        results[name] = result
        print(f"\n{name}: {result['n']} questions, not found {result['not_found_rate']:.0%}, sources listed "
              f"{result['sources_listed_rate'] if result['sources_listed_rate'] is not None else '–'}")
        for metric, d in result["differences"].items():
            r = result["results"]
            print(f"  {metric:13} ungrounded {r['ungrounded'][metric]:.4f}  grounded {r['grounded'][metric]:.4f}  "
                  f"change {d['difference']:+.4f}  95% CI {d['ci']}  {'significant' if d['significant'] else 'n.s.'}")
        c = result["citations"]
        print(f"  citations: {c['citations']} in {c['answers_citing']} answers, {c['removed']} removed (not retrieved), "
              f"cited sentences supported {c['supported']}/{c['cited_sentences']} (precision {c['precision']}), "
              f"held by the cited document {c['document_supported']} (precision {c['document_precision']}); "
              f"{c['moved']} moved to the passage holding their sentence (as the model cited: {c['model_supported']}/"
              f"{c['cited_sentences']}, precision {c['model_precision']})")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"model": args.model, "index": args.index, **results}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
