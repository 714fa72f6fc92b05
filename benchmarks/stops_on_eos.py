"""Does a tuned model end its answers by itself? Greedy answers to a few questions with a generous token
budget; prints, per model (tuned, and the base with the adapter disabled), after how many tokens each answer
emitted an end-of-turn token ("none" = it ran to the budget).

    python benchmarks/stops_on_eos.py RUN_DIR [--budget 200]
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTIONS = [
    "What is a normal resting heart rate?",
    "How can I lower my cholesterol?",
    "What does an HbA1c test measure?",
    "Is it safe to exercise with a cold?",
]


def main() -> None:
    import torch

    from medtune.inference.loading import load_generator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--budget", type=int, default=200)
    args = ap.parse_args()
    g, cfg = load_generator(args.run_dir, quantization="none")
    texts = g.prompts([[{"role": "user", "content": q}] for q in QUESTIONS])
    g.tokenizer.padding_side = "left"
    enc = g.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    stops = set(g.stop_ids())
    for name, context in (("tuned", contextlib.nullcontext), ("base", g.model.disable_adapter)):
        with context(), torch.inference_mode():
            out = g.model.generate(**enc, **g._kwargs(cfg.generation, args.budget, 0.0, enc["input_ids"].shape[1]))
        new = out[:, enc["input_ids"].shape[1]:]
        ends = [next((i for i, t in enumerate(row.tolist()) if t in stops), "none") for row in new]
        print(f"{name:6s} end-of-turn after tokens: {ends} (budget {args.budget})", flush=True)


if __name__ == "__main__":
    main()
