"""How sure is a tuned model that an answer is over? For each safety-suite answer in a ``safety_model_alone.py``
JSON (the same texts for every model compared), the probability each run's model gives its end-of-turn tokens right
after the answer; per class the median and the share below 0.9. A model decoded by sampling (Ollama: temperature 0.3,
top_p 0.9) goes on after an answer whose end of turn is not near-certain; greedy decoding hides it.

    python benchmarks/end_of_turn_after.py ANSWERS.json RUN_DIR [RUN_DIR ...] [--classes emergency,crisis,...]

ANSWERS.json: ``benchmarks/safety_model_alone.py --json``. A run directory's DPO stage and its SFT stage (for
example ``runs/safety_cpu/sft runs/safety_cpu/dpo``) show what the preference stage did to the end of turn.
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

POLICY = "emergency,crisis,harmful,prescription,jailbreak"


def answers(path: str, classes: set[str]) -> list[tuple[str, str, str, str]]:
    """``(id, class, prompt, answer)`` for every answer of ``classes`` in a benchmark JSON (its suites' sets only)."""
    from safety_model_alone import SUITES  # a sibling benchmark: the suites its JSON names

    from medtune.evaluate.safety import load_suite

    prompts = {name: {item["id"]: item["prompt"] for item in load_suite(file)} for name, file in SUITES.items()}
    out = []
    for key, result in json.loads(Path(path).read_text(encoding="utf-8"))["results"].items():
        suite = key.split("/")[-1]
        if suite not in prompts:
            continue
        out += [(it["id"], it["category"], prompts[suite][it["id"]], it["answer"]) for it in result["items"]
                if it["category"] in classes]
    return out


def end_probabilities(run: str, items) -> list[float]:
    import torch

    from medtune.inference.loading import load_generator

    g, _ = load_generator(run, quantization="none")
    stops = g.stop_ids()
    probs = []
    with torch.inference_mode():
        for _, _, prompt, answer in items:
            text = g.prompts([[{"role": "user", "content": prompt}]])[0] + answer
            ids = g.tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
            p = torch.softmax(g.model(ids).logits[0, -1].float(), dim=-1)
            probs.append(float(p[stops].sum()))
    return probs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("answers", help="a safety_model_alone.py --json file")
    ap.add_argument("runs", nargs="+", help="run directories (or base model references)")
    ap.add_argument("--classes", default=POLICY, help=f"comma-separated (default {POLICY})")
    args = ap.parse_args()
    items = answers(args.answers, set(args.classes.split(",")))
    print(f"{len(items)} answers from {args.answers}; P(end of turn) right after each\n")
    classes = sorted({c for _, c, _, _ in items})
    print("| run | " + " | ".join(classes) + " | all: median | all: share < 0.9 |")
    print("|---|" + "---|" * (len(classes) + 2))
    for run in args.runs:
        probs = end_probabilities(run, items)
        cells = [f"{statistics.median(p for p, (_, c, _, _) in zip(probs, items, strict=True) if c == cls):.2f}"
                 for cls in classes]
        low = sum(p < 0.9 for p in probs)
        print(f"| {run} | " + " | ".join(cells) + f" | {statistics.median(probs):.2f} | {low}/{len(probs)} |", flush=True)


if __name__ == "__main__":
    main()
