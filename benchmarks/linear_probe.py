"""Does a model's frozen representation carry the answer? A linear probe on its hidden states.

    python benchmarks/linear_probe.py [--model smollm2-135m-instruct] [--context conclusion] [--limit N]
    python benchmarks/linear_probe.py --task triage [--model RUN_OR_MODEL] [--benign medquad:../shared/data/medquad/5_NIDDK_QA]

The question behind it: when fine-tuning a model on PubMedQA does not move its accuracy, is the task beyond
the model (its hidden states do not tell yes from no from maybe) or beyond the training (they do, and the
fine-tune fails to read it out)? For every item the question as ``eval.mcq_mode: generate`` asks it (rendered
by the generator: the model's system prompt and chat template) runs through the frozen model once; the last
prompt position's hidden state of every layer is kept. A multinomial logistic regression on one layer's states
is fitted on the non-test items (ori_pqal.json without the 500 ids of test_ground_truth.json); the layer and the
L2 weight are chosen by 5-fold cross-validation on those items alone, then the probe answers the 500 test items
once.

``--task triage`` asks the same of the safety classes (emergency, crisis, harmful, prescription, general): can
the model tell, from the question alone, which reply the policy wants? Fitted on the prompts of the shipped safety
pairs (``safety_pairs.jsonl``; benign = general), tested on the built-in safety suite and the red-team set (written
apart from the pairs; the jailbreak items labelled with the class they expect), each question as the chat asks it.
``--benign KIND:PATH`` also asks 100 real consumer-health questions (the stable sample of
``safety_model_alone.py --benign``) and counts how many the probe calls general.

Prints the cross-validated accuracy per layer, then the test accuracy with its bootstrap 95% interval against
the majority class ("always yes") and the paired difference between the two, and the recall per class.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DATA = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def items(context: str, test: bool, limit: int | None):
    from medtune.core.config import MCQBenchmark
    from medtune.evaluate.mcq import load_benchmark

    ids = str(DATA / "pubmedqa/test_ground_truth.json")
    options = {"context": context} if test else {"context": context, "without_ids": ids}
    bench = MCQBenchmark(name="pubmedqa", kind="pubmedqa", path=str(DATA / "pubmedqa/ori_pqal.json"),
                         only_ids=ids if test else None, limit=limit, options=options)
    return load_benchmark(bench)


def triage_items(test: bool) -> tuple[list[str], list[str]]:
    """(questions, classes): the safety pairs' distinct prompts, or the suite's and the red-team set's."""
    import json

    from medtune.core.assets import BUILTIN_DIR
    from medtune.evaluate.safety import load_suite

    if test:
        rows = load_suite() + load_suite(BUILTIN_DIR / "redteam.jsonl")
        return [r["prompt"] for r in rows], [r["expect"] for r in rows]
    seen: dict[str, str] = {}
    for line in (BUILTIN_DIR / "safety_pairs.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        seen.setdefault(row["prompt"], "general" if row["category"] == "benign" else row["category"])
    return list(seen), list(seen.values())


def hidden_states(generator, questions: list[str], max_tokens: int):
    """``[n, layers + 1, hidden]``: the last prompt position of every layer (embeddings first), float32. The prompt
    is rendered by ``Generator.prompts`` (the model's system prompt and template), as the evaluation asks."""
    import torch
    from tqdm import tqdm

    model, tokenizer = generator.model.eval(), generator.tokenizer
    out = []
    with torch.inference_mode():
        for question in tqdm(questions, desc="hidden states", leave=False):
            (text,) = generator.prompts([[{"role": "user", "content": question}]])
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, -max_tokens:]
            states = model(input_ids=ids, output_hidden_states=True).hidden_states
            out.append(torch.stack([s[0, -1].float() for s in states]))
    return torch.stack(out)


def fit(x, y, classes: int, l2: float):
    """Multinomial logistic regression (L-BFGS, mean cross-entropy + l2·|W|²) on standardized features."""
    import torch

    mean, std = x.mean(0), x.std(0) + 1e-6
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    z = (x - mean) / std

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda q: (((q - mean) / std) @ w + b).argmax(1)


def cv_accuracy(x, y, classes: int, l2: float, folds: int = 5, seed: int = 0) -> float:
    import torch

    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    hits = 0
    for k in range(folds):
        held = order[k::folds]
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[held] = False
        hits += int((fit(x[keep], y[keep], classes, l2)(x[held]) == y[held]).sum())
    return hits / len(y)


def main() -> None:
    import torch

    from medtune.evaluate.bootstrap import metric_ci, paired_difference
    from medtune.inference.loading import load_generator

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--task", default="pubmedqa", choices=["pubmedqa", "triage"])
    ap.add_argument("--context", default="conclusion", choices=["abstract", "conclusion", "both"])
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of this many items per side (pubmedqa)")
    ap.add_argument("--max-tokens", type=int, default=768, help="keep the last N prompt tokens")
    ap.add_argument("--layers", type=int, nargs="*", default=None, help="layers to try (default: every 3rd and the last)")
    ap.add_argument("--benign", metavar="KIND:PATH", help="triage: a medical Q&A set whose questions should read as general")
    args = ap.parse_args()
    torch.manual_seed(0)

    generator, cfg = load_generator(args.model, quantization="none")
    if args.task == "pubmedqa":
        from medtune.evaluate.mcq import generate_prompt

        train, test = items(args.context, False, args.limit), items(args.context, True, args.limit)
        names = sorted({*train[0].options})
        q_train, q_test = [generate_prompt(it) for it in train], [generate_prompt(it) for it in test]
        c_train, c_test = [it.answer for it in train], [it.answer for it in test]
        shown = [f"{n!r} ({train[0].options[n]})" for n in names]
        what = f"context {args.context}"
    else:
        (q_train, c_train), (q_test, c_test) = triage_items(False), triage_items(True)
        names = sorted({*c_train})
        shown = [repr(n) for n in names]
        what = "triage classes (safety pairs' prompts -> suite + red-team)"
    y_train = torch.tensor([names.index(c) for c in c_train])
    y_test = torch.tensor([names.index(c) for c in c_test])
    start = time.perf_counter()
    x_train = hidden_states(generator, q_train, args.max_tokens)
    x_test = hidden_states(generator, q_test, args.max_tokens)
    x_benign = None
    if args.task == "triage" and args.benign:
        from safety_model_alone import benign_items  # a sibling benchmark: the same stable sample

        benign = [it["prompt"] for it in benign_items(args.benign, 100, cfg)]
        x_benign = hidden_states(generator, benign, args.max_tokens)
    print(f"{args.model}, {what}: {len(q_train)} train / {len(q_test)} test items, "
          f"hidden states in {time.perf_counter() - start:.0f} s", flush=True)

    depth = x_train.shape[1] - 1
    layers = args.layers if args.layers else sorted({*range(0, depth + 1, 3), depth})
    best = (-1.0, 0, 0.0)
    for layer in layers:
        scores = {l2: cv_accuracy(x_train[:, layer], y_train, len(names), l2) for l2 in L2_GRID}
        l2 = max(scores, key=scores.get)
        print(f"layer {layer:2d}: 5-fold CV accuracy on train {scores[l2]:.3f} (l2 {l2:g})", flush=True)
        best = max(best, (scores[l2], layer, l2))
    cv, layer, l2 = best
    probe_of = fit(x_train[:, layer], y_train, len(names), l2)
    predicted = probe_of(x_test[:, layer])
    majority = int(torch.bincount(y_train, minlength=len(names)).argmax())
    probe = (predicted == y_test).float().tolist()
    always = (y_test == majority).float().tolist()
    acc, base = metric_ci(probe), metric_ci(always)
    diff = paired_difference(always, probe)
    print(f"probe (layer {layer}, l2 {l2:g}, chosen by CV {cv:.3f}) on the {len(q_test)} test items: "
          f"accuracy {acc['value']:.3f} [{acc['ci'][0]:.3f}, {acc['ci'][1]:.3f}]")
    print(f"always {shown[majority]}: {base['value']:.3f} "
          f"[{base['ci'][0]:.3f}, {base['ci'][1]:.3f}]; probe - majority {diff['difference']:+.3f} "
          f"[{diff['ci'][0]:+.3f}, {diff['ci'][1]:+.3f}]")
    for k, name in enumerate(names):
        mine = y_test == k
        print(f"  {name}: recall {int((predicted[mine] == k).sum())}/{int(mine.sum())}, "
              f"predicted {int((predicted == k).sum())} times")
    if x_benign is not None:
        calls = probe_of(x_benign[:, layer])
        general = int((calls == names.index("general")).sum())
        others = {names[k]: int((calls == k).sum()) for k in range(len(names)) if names[k] != "general" and (calls == k).any()}
        print(f"{args.benign}: {general}/{len(calls)} questions read as general; the others as {others}")


if __name__ == "__main__":
    main()
