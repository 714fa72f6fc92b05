"""Cross-check medtune's MCQ log-likelihood scorer against lm-evaluation-harness, item by item.

    python benchmarks/mcq_vs_lmeval.py [--file ../shared/data/mcq/medqa.test.jsonl] [--kind medqa] [--limit 40] [--batch-size 8]

Builds a LOCAL lm-eval task from the same items (no Hub: a JSONL file read by datasets' ``json``
builder, the prompt written as lm-eval's own Jinja template — "Question: ...", lettered options,
"Answer:", continuations " A", " B", ...), runs lm-eval's ``hf`` model on the built-in model's
converted directory and medtune's scorer on the same items, then prints the agreement of the
chosen letters item by item and the scoring time of each (models loaded beforehand, same batch
size), as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
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


def lmeval_choices(items, model_dir: str, batch_size: int) -> tuple[list[str], float]:
    """lm-eval's chosen letter per item (argmax of its per-choice log-likelihoods) and the scoring seconds."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model_dir, dtype="float32", device="cpu", batch_size=batch_size)
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


def medtune_choices(items, model_dir: str, batch_size: int) -> tuple[list[str], float]:
    from medtune.evaluate.mcq import score_loglik
    from medtune.models import load_model, load_tokenizer

    model, tokenizer = load_model(model_dir, dtype="float32").eval(), load_tokenizer(model_dir)
    start = time.time()
    rows = score_loglik(model, tokenizer, items, batch_size)
    return [r["choice"] for r in rows], time.time() - start


def main() -> None:
    from medtune.config import MCQBenchmark
    from medtune.evaluate.mcq import load_benchmark
    from medtune.models import resolve

    data = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default=str(data / "mcq/medqa.test.jsonl"))
    ap.add_argument("--kind", default="medqa")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()
    items = load_benchmark(MCQBenchmark(name=args.kind, kind=args.kind, path=args.file, limit=args.limit), seed=0)
    model_dir = str(resolve(args.model).path)
    ours, t_ours = medtune_choices(items, model_dir, args.batch_size)
    theirs, t_theirs = lmeval_choices(items, model_dir, args.batch_size)
    same = 0
    for it, a, b in zip(items, ours, theirs):
        same += a == b
        print(f"{it.id:32s} gold {it.answer}  medtune {a}  lm-eval {b}  {'same' if a == b else 'DIFFERENT'}")
    print(f"agreement: {same}/{len(items)} items identical")
    print(f"scoring time: medtune {t_ours:.1f}s, lm-eval {t_theirs:.1f}s (batch size {args.batch_size}) -> medtune {t_theirs / t_ours:.2f}x faster")


if __name__ == "__main__":
    main()
