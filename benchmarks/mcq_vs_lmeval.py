"""Cross-check medtune's MCQ log-likelihood scorer against lm-evaluation-harness, item by item.

    python benchmarks/mcq_vs_lmeval.py [--file ../shared/data/mcq/medqa.test.jsonl] [--kind medqa] [--limit 40] [--batch-size 8]
    python benchmarks/mcq_vs_lmeval.py --file ../shared/data/pubmedqa/ori_pqal.json --kind pubmedqa \
        --only-ids ../shared/data/pubmedqa/test_ground_truth.json --limit 100 --precision-check --kernels

Builds a LOCAL lm-eval task from the same items (no Hub: a JSONL file read by datasets' ``json``
builder, the prompt written as lm-eval's own Jinja template — "Question: ...", lettered options,
"Answer:", continuations " A", " B", ...), runs lm-eval's ``hf`` model on the built-in model's
converted directory and medtune's scorer on the same items, then prints the agreement of the
chosen letters item by item and the scoring time of each (models loaded beforehand, same batch
size, same device: ``--device``, cuda when there is one), as a ratio. medtune runs twice: as it
runs by default (``bf16_checked``: bf16 autocast where the device has fast bf16, close calls
re-scored in float32) and in float32 only, like for like with lm-eval's float32. lm-eval runs
last, so any one-time warm-up of the process favours it.
``--precision-check`` also scores every item in plain bf16 and prints the largest shift of a
letter-vs-letter margin against float32 (the evidence behind ``eval.mcq_recheck_margin``) and that
pass's time: no scheme built on bf16 forwards of these prompts is faster on this machine, answers
checked or not. ``--kernels`` times the model's own matmul and attention shapes in float32 and
bf16, the hardware ratio that bounds what lower precision can buy here.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TEMPLATE = (
    "{% if context %}Abstract: {{context}}\nQuestion: {{question}}{% else %}Question: {{question}}{% endif %}\n"
    "{% for o in options %}{{o[0]}}. {{o[1]}}\n{% endfor %}Answer:"
)
TASK = """task: medtune_mcq_check
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: {template}
doc_to_choice: letters
doc_to_target: target
metric_list:
  - metric: acc
"""


def write_task(items, folder: Path) -> None:
    """The items as JSONL plus the task YAML that lm-eval's TaskManager picks up from ``folder``."""
    with open(folder / "items.jsonl", "w", encoding="utf-8") as f:
        for it in items:
            letters = list(it.options)
            row = {"id": it.id, "question": it.question, "context": it.context or "", "options": [[k, v] for k, v in it.options.items()],
                   "letters": letters, "target": letters.index(it.answer)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (folder / "medtune_mcq_check.yaml").write_text(TASK.format(data=folder / "items.jsonl", template=json.dumps(TEMPLATE)))


def lmeval_choices(items, model_dir: str, batch_size: int, device: str) -> tuple[list[str], float]:
    """lm-eval's chosen letter per item (argmax of its per-choice log-likelihoods) and the scoring seconds."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model_dir, dtype="float32", device=device, batch_size=batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        write_task(items, Path(tmp))
        manager = TaskManager(include_path=tmp)
        start = time.time()
        out = simple_evaluate(model=lm, tasks=["medtune_mcq_check"], task_manager=manager, log_samples=True, bootstrap_iters=0)
        seconds = time.time() - start
    samples = sorted(out["samples"]["medtune_mcq_check"], key=lambda s: s["doc_id"])
    choices = []
    for s in samples:
        lls = [float(r[0]) for r in s["filtered_resps"]]
        choices.append(s["doc"]["letters"][max(range(len(lls)), key=lls.__getitem__)])
    return choices, seconds


def medtune_rows(model, tokenizer, items, batch_size: int, precision: str, **options) -> tuple[list[dict], float]:
    """medtune's rows (``score_loglik`` with ``options``, e.g. ``recheck_margin``) and the scoring seconds."""
    from medtune.evaluate.mcq import score_loglik

    start = time.time()
    rows = score_loglik(model, tokenizer, items, batch_size, precision=precision, **options)
    return rows, time.time() - start


def margin_shift(exact: list[dict], approx: list[dict]) -> float:
    """Largest change, over items and letters, of (best letter - other letter) between two scorings."""
    worst = 0.0
    for x, y in zip(exact, approx):
        top = x["choice"]
        for k in x["logprobs"]:
            if k != top:
                worst = max(worst, abs((x["logprobs"][top] - x["logprobs"][k]) - (y["logprobs"][top] - y["logprobs"][k])))
    return worst


def kernel_speeds(model, items, tokenizer, batch_size: int) -> None:
    """float32 vs bf16 throughput of the model's linear layers and causal attention at this benchmark's prompt length."""
    import torch
    import torch.nn.functional as F

    from medtune.evaluate.mcq import prompt

    cfg = model.config
    length = round(sum(len(tokenizer(prompt(it))["input_ids"]) for it in items) / len(items))
    heads, kv, dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    rows, device = batch_size * length, next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def seconds(fn, repeat: int = 20) -> float:
        fn()
        sync()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        sync()
        return (time.perf_counter() - start) / repeat

    print(f"kernels on {device} at batch {batch_size} x {length} tokens (the mean prompt), float32 -> bf16:")
    with torch.inference_mode():
        for name, k, n in [("attention q/o", cfg.hidden_size, cfg.hidden_size), ("attention k/v", cfg.hidden_size, kv * dim),
                           ("mlp up/gate", cfg.hidden_size, cfg.intermediate_size), ("mlp down", cfg.intermediate_size, cfg.hidden_size)]:
            t = {}
            for dtype in (torch.float32, torch.bfloat16):
                x, w = torch.randn(rows, k, dtype=dtype, device=device), torch.randn(n, k, dtype=dtype, device=device)
                t[dtype] = seconds(partial(F.linear, x, w))
            print(f"  linear {name:14s} {rows * k * n / t[torch.float32] / 1e9:6.0f} -> {rows * k * n / t[torch.bfloat16] / 1e9:6.0f} "
                  f"GMAC/s ({t[torch.float32] / t[torch.bfloat16]:.2f}x)")
        t = {}
        for dtype in (torch.float32, torch.bfloat16):
            q = torch.randn(batch_size, heads, length, dim, dtype=dtype, device=device)
            k_, v = (torch.randn(batch_size, kv, length, dim, dtype=dtype, device=device) for _ in range(2))
            attention = partial(F.scaled_dot_product_attention, q, k_, v, is_causal=True, enable_gqa=heads != kv)
            t[dtype] = seconds(attention, repeat=5)
        print(f"  causal SDPA attention          {t[torch.float32] * 1e3:6.1f} -> {t[torch.bfloat16] * 1e3:6.1f} ms per layer "
              f"({t[torch.float32] / t[torch.bfloat16]:.2f}x)")


def main() -> None:
    from medtune.core.config import MCQBenchmark
    from medtune.core.models import load_model, load_tokenizer, resolve
    from medtune.evaluate.mcq import RECHECK_MARGIN, bf16_autocast_helps, load_benchmark, top_margin

    data = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default=str(data / "mcq/medqa.test.jsonl"))
    ap.add_argument("--kind", default="medqa")
    ap.add_argument("--only-ids", default=None, help="PubMedQA: JSON file of ids to keep (e.g. test_ground_truth.json)")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--device", default=None, help="where both scorers run (default: cuda when there is one, else cpu)")
    ap.add_argument(
        "--precision-check", action="store_true", help="also score in plain bf16: largest margin shift vs float32, and its time",
    )
    ap.add_argument("--kernels", action="store_true", help="also time the model's matmul and attention shapes in float32 and bf16")
    args = ap.parse_args()
    items = load_benchmark(MCQBenchmark(name=args.kind, kind=args.kind, path=args.file, limit=args.limit, only_ids=args.only_ids), seed=0)
    model_dir = str(resolve(args.model).path)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_model(model_dir, dtype="float32").to(device).eval(), load_tokenizer(model_dir)
    fast, t_fast = medtune_rows(model, tokenizer, items, args.batch_size, "bf16_checked")
    exact, t_exact = medtune_rows(model, tokenizer, items, args.batch_size, "model")
    theirs, t_theirs = lmeval_choices(items, model_dir, args.batch_size, device)
    same_fast = same_exact = 0
    for it, a, b, c in zip(items, fast, exact, theirs):
        same_fast += a["choice"] == c
        same_exact += b["choice"] == c
        flag = "same" if a["choice"] == b["choice"] == c else "DIFFERENT"
        print(
            f"{it.id:32s} gold {it.answer}  medtune {a['choice']} ({a['precision']}{', rechecked' if a.get('rechecked') else ''}, "
            f"margin {top_margin(b['logprobs']):.3f})  medtune-fp32 {b['choice']}  lm-eval {c}  {flag}"
        )
    n = len(items)
    rechecked = sum(bool(r.get("rechecked")) for r in fast)
    print(f"gold accuracy: {sum(r['choice'] == r['answer'] for r in exact) / n:.3f}; distinct lm-eval answers: {sorted(set(theirs))}")
    print(f"agreement with lm-eval: medtune (default, bf16_checked) {same_fast}/{n} items identical; medtune float32 {same_exact}/{n}")
    mode = "bf16 autocast + float32 re-check" if bf16_autocast_helps(model) else "float32 (no fast bf16 on this machine)"
    print(f"medtune default scoring here: {mode}; {rechecked}/{n} items re-checked in float32 (margin < {RECHECK_MARGIN})")
    print(
        f"scoring time on {device} (batch size {args.batch_size}, {n} items): "
        f"medtune default {t_fast:.1f}s, medtune float32 {t_exact:.1f}s, "
        f"lm-eval float32 {t_theirs:.1f}s -> medtune default {t_theirs / t_fast:.2f}x faster than lm-eval, "
        f"float32 like for like {t_theirs / t_exact:.2f}x"
    )
    if args.precision_check:
        plain, t_plain = medtune_rows(model, tokenizer, items, args.batch_size, "bf16_checked", recheck_margin=0.0)  # nothing re-checked
        flips = sum(x["choice"] != y["choice"] for x, y in zip(exact, plain))
        print(
            f"plain bf16 vs float32: largest letter-margin shift {margin_shift(exact, plain):.3f} nats; {flips}/{n} choices differ "
            f"(re-check margin {RECHECK_MARGIN}); plain bf16 took {t_plain:.1f}s = {t_theirs / t_plain:.2f}x faster than lm-eval"
        )
    if args.kernels:
        kernel_speeds(model, items, tokenizer, args.batch_size)


if __name__ == "__main__":
    main()
