"""Evaluation's answer speed: how medtune generates a run's eval answers now against how it did, in one run.

The questions of a run's first ``eval.sets`` set (or its held-out split), through the answer path the run's
evaluation uses (``Responder``, grounded when ``eval.grounded``), greedy, ``generation.batch_size`` at a time:

* **before**: batches in the set's order (each padded to its longest prompt), a KV cache grown at every token;
  the tuned model through its unmerged LoRA adapter (three matmuls per adapted layer);
* **now**: the prompts batched longest first (``Generator.generate_stopped``), on a CPU a static KV cache per
  batch (``generation.static_cache``); the tuned model with its adapter merged into the weights for the
  duration (``inference.loading.adapter_merged``), as ``medtune eval`` does.

Prints seconds per variant, the now/before ratio, and how many answers are identical (they should all be).

    python benchmarks/eval_speed.py runs/quality [--n 24] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run directory (its config, adapter and, with eval.grounded, its index)")
    ap.add_argument("--n", type=int, default=24, help="questions (default 24)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the run's eval.max_new_tokens")
    args = ap.parse_args()

    from medtune.core.rundir import RunDir
    from medtune.data.records import read_jsonl
    from medtune.evaluate.run import _retriever, load_set
    from medtune.inference.loading import adapter_merged, load_generator
    from medtune.inference.responder import Responder

    generator, cfg = load_generator(args.run, quantization="none")
    retriever = _retriever(cfg) if cfg.eval.grounded else False
    if cfg.eval.sets:
        records, _ = load_set(cfg.eval.sets[0], cfg, [])
    else:
        records = read_jsonl(RunDir(args.run).data / "eval.jsonl")
    questions = [r.question for r in records[: args.n]]
    grown = cfg.model_copy(update={"generation": cfg.generation.model_copy(update={"static_cache": False})})
    responders = {"now": Responder(generator, cfg, guardrails=False, retriever=retriever),
                  "before": Responder(generator, grown, guardrails=False, retriever=retriever)}
    size, tokens = cfg.generation.batch_size, args.max_new_tokens or cfg.eval.max_new_tokens
    model = generator.model

    def answers(in_order: bool) -> tuple[list[str], float]:
        start = time.perf_counter()
        if in_order:  # one call per batch: no reordering across the set
            out = [a for i in range(0, len(questions), size) for a in
                   responders["before"].answer_batch(questions[i : i + size], think=True, max_new_tokens=tokens, temperature=0.0)]
        else:
            out = responders["now"].answer_batch(questions, think=True, max_new_tokens=tokens, temperature=0.0)
        return [a.answer for a in out], time.perf_counter() - start

    print(f"{args.run}: {len(questions)} questions, batch {size}, {tokens} new tokens, grounded {bool(retriever)}")
    rows = []
    for model_name, before_ctx, now_ctx in (("base", model.disable_adapter, model.disable_adapter),
                                            ("tuned", nullcontext, lambda: adapter_merged(model))):
        with before_ctx():
            before, t_before = answers(in_order=True)
        with now_ctx():
            now, t_now = answers(in_order=False)
        same = sum(a == b for a, b in zip(before, now, strict=True))
        rows.append((model_name, t_before, t_now, same))
    print(f"{'model':<6} {'before s':>9} {'now s':>7} {'now/before':>10} {'identical answers':>18}")
    for name, t_before, t_now, same in rows:
        print(f"{name:<6} {t_before:9.1f} {t_now:7.1f} {t_now / t_before:10.2f} {same:>11}/{len(questions)}")
    total_before, total_now = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'both':<6} {total_before:9.1f} {total_now:7.1f} {total_now / total_before:10.2f}")
    return 0 if all(r[3] == len(questions) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
