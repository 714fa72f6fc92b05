"""Multiple-choice benchmarks: MedQA, MedMCQA, PubMedQA — accuracy of any model, base or tuned.

Items come from the data source adapters (``data/sources``), so every file shape they read works
here too: medagents-benchmark's ``mcq/*.jsonl`` (``{question, options{A..}, answer_idx}``), PubMedQA's
expert set ``ori_pqal.json`` (optionally only the ids of ``test_ground_truth.json``) and the usual
Hub ids through ``datasets.load_dataset`` (a clear error at once when offline).

Two ways to score:

* ``loglik`` — lm-evaluation-harness's multiple-choice convention, zero-shot, no chat template::

      Question: <stem>            (PubMedQA: "Abstract: <contexts>" then "Question: <question>")
      A. <option>
      B. <option>
      Answer:

  and the choice is the letter whose continuation (" A", " B", ...) is most likely. Each letter is
  one token, so ONE forward pass per question gives every letter's log-probability. The prompts
  are batched with right padding and no attention mask: attention is causal, so a row's real tokens
  never see the padding after them and compute exactly what they would alone, and SDPA's causal
  kernel skips the masked half instead of applying a padding mask. Only the logits at each row's
  last real position are computed (``logits_to_keep`` with those positions). Where bf16 is fast, questions
  are scored under bf16 autocast and the close calls re-scored in float32 (``score_loglik``).
* ``generate`` — the question and options go to the model through its chat template (as a user
  would ask), it answers greedily, and the letter is parsed from the answer; answers with no
  recognisable letter count as wrong and their share is reported as ``unparseable_rate``.

Accuracy comes with its standard error (sample standard deviation / sqrt(n), as lm-eval reports),
a bootstrap interval and the chance level (mean of 1 / number of options). ``limit`` scores a
seeded sample of the items, the same sample for every model.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

HUB = {
    "medqa": ("GBaker/MedQA-USMLE-4-options", "test"),
    "medmcqa": ("openlifescienceai/medmcqa", "validation"),
    "pubmedqa": ("qiaojin/PubMedQA", "train"),  # pqa_labeled has a single split
}
"""The usual Hub id and evaluation split of each benchmark kind."""
GENERATE_INSTRUCTION = "Answer with the letter of the correct option."
GENERATE_TOKENS = 24
RECHECK_MARGIN = 0.5
"""Letter margin (nats) below which a bf16 score is redone in float32 (about 4x the largest bf16 shift measured)."""


@dataclass
class Item:
    id: str
    question: str
    options: dict[str, str]
    answer: str
    context: str | None = None
    """PubMedQA's abstract."""


def load_benchmark(bench, seed: int = 0) -> list[Item]:
    """The items of one ``MCQBenchmark`` config (a seeded sample of ``bench.limit`` of them)."""
    from medtune.data.errors import DataError
    from medtune.data.sources import load_source

    kind = bench.kind or (bench.name if bench.name in HUB else "mcq")
    path = bench.path
    options: dict = dict(bench.options)
    if path is None:
        if kind not in HUB:
            raise DataError(f"eval.mcq[{bench.name}]", f"give a path (no usual Hub id for kind {kind!r})", field="path")
        path = HUB[kind][0]
    if not Path(path).expanduser().exists():
        options["split"] = bench.split or HUB.get(kind, (None, "test"))[1]
    if bench.only_ids:
        if kind != "pubmedqa":
            raise DataError(f"eval.mcq[{bench.name}]", "only_ids is a PubMedQA option", field="only_ids")
        options["only_ids"] = bench.only_ids
    items = [to_item(r, pubmed=kind == "pubmedqa") for r in load_source(kind, path, **options)]
    if not items:
        raise DataError(str(path), f"no multiple-choice items (benchmark {bench.name!r})")
    if bench.limit and bench.limit < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), bench.limit))
        items = [items[i] for i in keep]
    return items


def to_item(record, pubmed: bool = False) -> Item:
    meta = record.meta
    stem, context = meta["stem"], None
    if pubmed:  # the adapters lay PubMedQA out as contexts one per line, then the question
        *contexts, stem = stem.split("\n")
        context = " ".join(contexts) or None
    return Item(record.id, stem, dict(meta["options"]), meta["answer_idx"], context)


def prompt(item: Item) -> str:
    """The zero-shot prompt ending in "Answer:" (lm-eval's multiple-choice layout)."""
    options = "\n".join(f"{k}. {v}" for k, v in item.options.items())
    head = f"Abstract: {item.context}\nQuestion: {item.question}" if item.context else f"Question: {item.question}"
    return f"{head}\n{options}\nAnswer:"


def letter_token_ids(tokenizer, letters) -> dict[str, int]:
    """Token id of the continuation " X" after "Answer:", split as lm-eval splits context+continuation."""
    context = tokenizer("Answer:")["input_ids"]
    ids = {}
    for letter in letters:
        whole = tokenizer("Answer: " + letter)["input_ids"]
        continuation = whole[len(context) :]
        if whole[: len(context)] != context or len(continuation) != 1:
            raise ValueError(
                f"the tokenizer splits ' {letter}' after 'Answer:' into {len(continuation)} tokens; one forward pass needs one"
            )
        ids[letter] = continuation[0]
    return ids


def score_loglik(
    model,
    tokenizer,
    items: list[Item],
    batch_size: int = 8,
    progress: bool = False,
    precision: str = "bf16_checked",
    recheck_margin: float = RECHECK_MARGIN,
) -> list[dict]:
    """Per item: the letters' log-probabilities after the prompt and the chosen letter (argmax).

    ``precision="bf16_checked"`` on a float32 model where bf16 is fast (``models.fast_bf16``): every
    question is scored under bfloat16 autocast (about twice the matmul throughput), then each item
    whose two best letters are closer than ``recheck_margin`` nats is scored again in float32 and
    takes those figures. bf16 moves a letter-vs-letter margin by ~0.1 nat on these models
    (``benchmarks/mcq_vs_lmeval.py --precision-check`` measures it), so a wider margin cannot flip
    and the chosen letters are the float32 ones. ``"model"`` = the model's own precision only.
    """
    fast = precision == "bf16_checked" and bf16_autocast_helps(model)
    rows = _letter_logprobs(model, tokenizer, items, batch_size, progress, bf16=fast)
    if fast:
        close = [i for i, row in enumerate(rows) if top_margin(row["logprobs"]) < recheck_margin]
        exact = _letter_logprobs(model, tokenizer, [items[i] for i in close], batch_size, False, bf16=False) if close else []
        for i, row in zip(close, exact):
            rows[i] = {**row, "rechecked": True}
    return rows


def top_margin(logprobs: dict[str, float]) -> float:
    """Log-probability gap between the best and the second-best letter."""
    best, second = sorted(logprobs.values(), reverse=True)[:2]
    return best - second


def bf16_autocast_helps(model) -> bool:
    """A float32, unquantized model on a device with fast bf16 (a 4-bit or bf16 model runs as it is)."""
    import torch

    from medtune.core.models import fast_bf16

    if getattr(getattr(model, "config", None), "quantization_config", None) is not None:
        return False
    first = next(model.parameters())
    return first.dtype == torch.float32 and fast_bf16(first.device)


def _letter_logprobs(model, tokenizer, items: list[Item], batch_size: int, progress: bool, bf16: bool) -> list[dict]:
    import torch
    from tqdm.auto import tqdm

    letters = sorted({k for it in items for k in it.options})
    ids = letter_token_ids(tokenizer, letters)
    encoded = [tokenizer(prompt(it))["input_ids"] for it in items]
    order = sorted(range(len(items)), key=lambda i: -len(encoded[i]))  # similar lengths together
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    first = next(model.parameters())
    device, precision = first.device, "bf16" if bf16 else str(first.dtype).removeprefix("torch.")
    out: list[dict | None] = [None] * len(items)
    for start in tqdm(range(0, len(order), batch_size), desc="mcq" + (" (bf16)" if bf16 else ""), disable=not progress, unit="batch"):
        chunk = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        for row, i in enumerate(chunk):  # right padding, no attention mask: see the module docstring
            input_ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
        last = torch.tensor([len(encoded[i]) - 1 for i in chunk])
        keep = torch.unique(last)  # sorted: the few distinct last positions of the batch
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=input_ids.to(device), logits_to_keep=keep.to(device)).logits
        logits = logits[torch.arange(len(chunk)), torch.searchsorted(keep, last).to(logits.device)]
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, i in enumerate(chunk):
            scores = {k: float(logprobs[row, ids[k]]) for k in items[i].options}
            out[i] = {
                "id": items[i].id,
                "answer": items[i].answer,
                "choice": max(scores, key=scores.get),
                "logprobs": scores,
                "precision": precision,
            }
    return out


def score_generate(generator, gen_cfg, items: list[Item], progress: bool = False) -> list[dict]:
    """Per item: the generated answer and the letter parsed from it (None if none is recognisable)."""
    conversations = [[{"role": "user", "content": generate_prompt(it)}] for it in items]
    answers = generator.generate(conversations, gen_cfg, max_new_tokens=GENERATE_TOKENS, temperature=0.0, progress=progress)
    return [{"id": it.id, "answer": it.answer, "choice": parse_letter(text, it.options), "text": text} for it, text in zip(items, answers)]


def generate_prompt(item: Item) -> str:
    options = "\n".join(f"{k}. {v}" for k, v in item.options.items())
    head = f"{item.context}\n\n{item.question}" if item.context else item.question
    return f"{head}\n\n{options}\n\n{GENERATE_INSTRUCTION}"


def parse_letter(text: str, options: dict[str, str]) -> str | None:
    """The option letter an answer gives: "B", "(B)", "B. text", "The answer is B", or an option's exact text."""
    letters = "".join(options)
    cls = f"[{re.escape(letters)}]"
    for pattern in (
        rf"^\W*\(?({cls})\)?(?:[.):,\s]|$)",  # starts with the letter
        rf"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?({cls})\b\)?",  # "the answer is B"
        rf"(?:^|\s)\(?({cls})[.)](?:\s|$)",  # "... B) text"
    ):
        m = re.search(pattern, text, flags=re.IGNORECASE if pattern.startswith(r"\b") else 0)
        if m:
            return m.group(1).upper()
    lowered = text.strip().lower()
    for letter, option in options.items():  # "yes", "Maybe." ...: the option's own text first
        if lowered.startswith(option.lower()):
            return letter
    return None


def summary(scored: list[dict], items: list[Item], samples: int = 1000, seed: int = 0) -> dict:
    """Accuracy, standard error, bootstrap interval, n and chance level (plus the unparseable rate for generation)."""
    from medtune.evaluate.bootstrap import metric_ci

    hits = [float(s["choice"] == s["answer"]) for s in scored]
    n = len(hits)
    acc = sum(hits) / n
    out = {
        "accuracy": acc,
        "stderr": math.sqrt(acc * (1 - acc) * n / (n - 1) / n) if n > 1 else None,
        "ci": metric_ci(hits, samples=samples, seed=seed)["ci"],
        "n": n,
        "chance": sum(1 / len(it.options) for it in items) / n,
    }
    if any("precision" in s for s in scored):
        out["bf16_scored"] = sum(s["precision"] == "bf16" for s in scored)
        out["rechecked_float32"] = sum(bool(s.get("rechecked")) for s in scored)
    if any("text" in s for s in scored):
        out["unparseable_rate"] = sum(s["choice"] is None for s in scored) / n
    return out


def evaluate_benchmark(
    generator,
    items: list[Item],
    mode: str,
    gen_cfg,
    batch_size: int = 8,
    samples: int = 1000,
    seed: int = 0,
    progress: bool = False,
    precision: str = "bf16_checked",
    recheck_margin: float = RECHECK_MARGIN,
) -> tuple[dict, dict[str, list[dict]]]:
    """Score one model on one benchmark: ``(summary, {mode: per-item rows})``.

    For ``both`` the summary's headline accuracy is the log-likelihood one and the generative
    figures sit under ``"generate"``.
    """
    rows: dict[str, list[dict]] = {}
    if mode in ("loglik", "both"):
        rows["loglik"] = score_loglik(generator.model, generator.tokenizer, items, batch_size, progress, precision, recheck_margin)
    if mode in ("generate", "both"):
        rows["generate"] = score_generate(generator, gen_cfg, items, progress)
    first = "loglik" if "loglik" in rows else "generate"
    result = {"mode": first, **summary(rows[first], items, samples, seed)}
    if mode == "both":
        result["generate"] = summary(rows["generate"], items, samples, seed)
    return result, rows


def score_model(
    generator,
    gen_cfg,
    benches,
    mode: str = "loglik",
    batch_size: int = 8,
    samples: int = 1000,
    seed: int = 0,
    progress: bool = True,
    precision: str = "bf16_checked",
) -> dict[str, dict]:
    """``{bench.name: summary}`` for one model (``medtune mcq`` and the benchmark script)."""
    import time

    results = {}
    for bench in benches:
        items = load_benchmark(bench, seed)
        start = time.time()
        results[bench.name], _ = evaluate_benchmark(generator, items, mode, gen_cfg, batch_size, samples, seed, progress, precision)
        results[bench.name]["seconds"] = round(time.time() - start, 1)
    return results
