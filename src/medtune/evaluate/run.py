"""The evaluate stage: the base model and the tuned model on the same held-out items.

For each model:

1. eval loss, perplexity and token accuracy per held-out item (``loss.py``: TRL's tokenization
   and answer-only masking, one forward pass per batch);
2. greedy answers to the held-out questions (batched, left padding; through ``Responder`` with the
   guardrails off, so a reasoning model's ``<think>`` section is split off and only the answer is
   scored), scored against the reference answers per item: ROUGE-1/2/L, sentence BLEU and
   BERTScore P/R/F1 (``metrics.py``);
3. degeneration (``degeneration.py``): answers with a repeated line, an n-gram loop, a template
   learned from the run's training answers, a list header at the end or a run of numbers, distinct-1/2, the share that ended on EOS, length
   against the reference;
4. the same (loss, answers, metrics, degeneration) on every external question set (``eval.sets``,
   ``medtune eval RUN --data kind:path``): e.g. a source held out of training;
5. optionally, MCQ benchmarks (``mcq.py``) and the safety red-team suite through the ask path;
6. with an index (``retrieval.index``, ``medtune eval --index``): the tuned model's answers with and
   without retrieval on the same held-out items (``grounded.py``: ROUGE-L/BERTScore with paired intervals,
   not-found rate, citation checks) under ``report["grounded"]``, answers in ``grounded_answers.jsonl``.
   With ``eval.grounded`` the answers of steps 2-4 themselves come from the retrieved passages, for base and
   tuned alike (the grounded assistant's answer path; citation markers and Sources list not scored).

The base model is the tuned model with its adapter switched off, so both share one loaded base.
Every metric gets a bootstrap 95% interval and the base→tuned difference a paired-bootstrap one
(``bootstrap.py``); a difference whose interval contains 0 is reported as not significant.
Writes ``eval/report.json`` (``{"results": {"base": …, "finetuned": …}, "ci", "differences",
"degeneration", "sets": {name: {the same keys}}, "mcq", "safety", …}``), ``report.md``, ``report.html``
(``report_html.py``), ``answers.jsonl`` and ``answers_<set>.jsonl`` per external set.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field

from medtune.core.atomic import write_text
from medtune.core.config import EvalSet, RunConfig
from medtune.core.rundir import RunDir
from medtune.data.records import Record, read_jsonl
from medtune.evaluate.metrics import METRICS
from medtune.evaluate.report import write_report
from medtune.evaluate.safety import DURING_TRAINING_FILE

log = logging.getLogger(__name__)


def evaluate(cfg: RunConfig, run: RunDir, sets: list[EvalSet] | None = None) -> dict:
    """Base vs tuned on the held-out split, then on every set of ``eval.sets`` and ``sets`` (``report["sets"]``)."""
    from medtune.evaluate.grounded import scored_text
    from medtune.evaluate.loss import item_losses
    from medtune.inference.loading import adapter_merged, load_generator
    from medtune.inference.responder import Responder

    records = read_jsonl(run.data / "eval.jsonl")
    if not records:
        raise ValueError(f"{run.data / 'eval.jsonl'}: no held-out records to evaluate (data.eval_fraction is 0?)")
    retriever = _retriever(cfg)  # before the model: a missing index fails fast
    generator, _ = load_generator(str(run.path), quantization="none" if cfg.eval.base_precision == "full" else None)
    model = generator.model
    # the model's answers as they are, less any <think> section (with eval.grounded, from the retrieved passages)
    raw = Responder(generator, cfg, guardrails=False, retriever=retriever if cfg.eval.grounded else False)
    train = read_jsonl(run.data / "train.jsonl") if (run.data / "train.jsonl").exists() else []
    held = Scored("held-out", records, records[: cfg.eval.max_samples] if cfg.eval.max_samples else records)
    externals = []
    for s in [*cfg.eval.sets, *(sets or [])]:
        items, left_out = load_set(s, cfg, train)
        externals.append(Scored(s.label, items, items, s, left_out))
    for scored in (held, *externals):
        scored.trainer = _loss_trainer(cfg, run, generator, scored.records)
    benches = [(b, _mcq_items(b, cfg)) for b in cfg.eval.mcq]
    safety_items = _safety_items(cfg) if cfg.eval.safety else None

    mcq_raw, safety = {}, {}
    # the tuned model answers with its adapter merged into the weights (faster, the same answers); the base model
    # first, so it never sees weights that were merged and unmerged
    variants = ([("base", model.disable_adapter)] if cfg.eval.compare_base else []) + [("finetuned", lambda: adapter_merged(model))]
    start = time.time()
    for name, context in variants:
        log.info("evaluating %s", name)
        with context():
            for scored in (held, *externals):
                scored.losses[name] = item_losses(model, scored.trainer)
                answered = raw.answer_batch([c[-1]["content"] for c in scored.conversations], [c[:-1] for c in scored.conversations],
                                            think=True, max_new_tokens=cfg.eval.max_new_tokens, temperature=cfg.eval.temperature,
                                            progress=True)
                scored.answers[name] = [scored_text(a) for a in answered] if cfg.eval.grounded else [a.answer for a in answered]
                scored.reasoned[name] = [bool(a.thinking.strip()) for a in answered]
                scored.stopped[name] = [a.finish_reason == "stop" for a in answered]
            mcq_raw[name] = [_score_mcq(generator, cfg, items) for _, items in benches]
            if safety_items is not None:
                safety[name] = _safety(generator, cfg, safety_items)
    templates = _templates(train, cfg)
    names = [n for n in ("base", "finetuned") if n in held.answers]
    report = {
        **score(held, cfg, templates),
        "mcq": {},
        "safety": safety,
        "n_eval_records": len(records),
        "n_loss_items": len(held.losses["finetuned"]),
        "generation": {"max_new_tokens": cfg.eval.max_new_tokens, "temperature": cfg.eval.temperature,
                       "repetition_penalty": cfg.generation.repetition_penalty,
                       "no_repeat_ngram_size": cfg.generation.no_repeat_ngram_size},
        "base_precision": cfg.eval.base_precision,
        "bertscore_model": cfg.eval.bertscore_model or None,
        "bootstrap": {"samples": cfg.eval.bootstrap_samples, "seed": cfg.eval.bootstrap_seed, "level": 0.95},
        "sets": {x.name: {**score(x, cfg, templates), "kind": x.config.kind, "path": x.config.path, "left_out": x.left_out}
                 for x in externals},
    }
    during = run.logs / DURING_TRAINING_FILE
    if during.exists():
        report["safety_during_training"] = json.loads(during.read_text())
    for i, (bench, _) in enumerate(benches):
        report["mcq"][bench.name] = _mcq_entry({n: mcq_raw[n][i] for n in names}, cfg)
    if cfg.retrieval.index:
        with adapter_merged(model):
            report["grounded"] = _grounded(generator, cfg, run, held.conversations, held.references, retriever)
    report["seconds"] = round(time.time() - start, 1)
    write_report(run, report, held.gen_records, held.references, held.answers,
                 {x.name: (x.gen_records, x.references, x.answers) for x in externals})
    run.update_manifest(eval={"report": str(run.eval / "report.json"), "seconds": report["seconds"]})
    return report


@dataclass
class Scored:
    """One question set being evaluated: its records, and per model its item losses, answers and stop flags."""

    name: str
    records: list[Record]
    gen_records: list[Record]
    """The records whose answers are generated (eval.max_samples of the held-out split)."""
    config: EvalSet | None = None
    left_out: dict = field(default_factory=dict)
    trainer: object = None
    losses: dict = field(default_factory=dict)
    answers: dict = field(default_factory=dict)
    stopped: dict = field(default_factory=dict)
    reasoned: dict = field(default_factory=dict)
    """Per model, per generated answer: whether it wrote a non-empty <think> section first."""

    @property
    def conversations(self) -> list[list[dict]]:
        return [r.dialogue()[:-1] for r in self.gen_records]

    @property
    def references(self) -> list[str]:
        return [r.dialogue()[-1]["content"] for r in self.gen_records]


def score(s: Scored, cfg, templates) -> dict:
    """One set's metrics: value and interval per model, the paired differences, corpus BLEU, degeneration."""
    from medtune.evaluate.degeneration import compare

    per_item = {name: item_scores(s.losses[name], s.answers[name], s.references, cfg) for name in s.answers}
    _add_bertscore(per_item, s.answers, s.references, cfg)
    if any(any(flags) for flags in s.reasoned.values()):  # a reasoning model: the share of answers that thought first
        for name in per_item:
            per_item[name]["reasoning"] = ([float(x) for x in s.reasoned[name]], None)
    names = [n for n in ("base", "finetuned") if n in per_item]
    summaries = {n: summarize(per_item[n], cfg) for n in names}
    return {
        "results": {n: summaries[n][0] for n in names},
        "ci": {n: summaries[n][1] for n in names},
        "differences": differences(per_item["base"], per_item["finetuned"], cfg) if len(names) == 2 else {},
        "corpus_bleu": {n: _corpus_bleu(s.answers[n], s.references) for n in names},
        "degeneration": compare({n: {"answers": s.answers[n], "stopped": s.stopped[n]} for n in names}, s.references, templates,
                                cfg.eval.bootstrap_samples, cfg.eval.bootstrap_seed),
        "n_generated": len(s.gen_records),
    }


def load_set(s: EvalSet, cfg, train: list[Record]) -> tuple[list[Record], dict]:
    """An external set's records: questions also in the training set left out (counted), then a stable sample of ``limit``."""
    from medtune.core.config import SourceConfig
    from medtune.data.errors import SkipLog
    from medtune.data.prepare import load_source
    from medtune.data.split import stable_fraction

    skips = SkipLog()
    loaded = load_source(SourceConfig(kind=s.kind, path=s.path, fields=s.fields, options=s.options), "skip", skips)
    seen = {_norm(r.question) for r in train}
    records = [r for r in loaded if _norm(r.question) not in seen]
    if not records:
        raise ValueError(f"eval set {s.label} ({s.kind}:{s.path}): no questions left to score ({len(loaded)} loaded, all in training)")
    left_out = {"loaded": len(loaded), "in_training": len(loaded) - len(records), "skipped": skips.to_dict()["total"]}
    if s.skip or (s.limit is not None and len(records) > s.limit):
        records = sorted(records, key=lambda r: stable_fraction(cfg.eval.bootstrap_seed, f"{r.source}/{r.id}"))
        records = records[s.skip: None if s.limit is None else s.skip + s.limit]
        if not records:
            raise ValueError(f"eval set {s.label} ({s.kind}:{s.path}): skip {s.skip} leaves no questions "
                             f"({left_out['loaded'] - left_out['in_training']} not in training)")
        left_out["skipped_first"] = s.skip
    return records, left_out


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _templates(train: list[Record], cfg):
    """The templates of the run's training answers: the degeneration report's 'learned template' detector.
    A small training set needs fewer documents per template (at most 5% of its documents, at least 3)."""
    from medtune.data.boilerplate import fit_records, group_of

    if not train:
        return None
    documents = len({group_of(r) for r in train})
    need = max(3, min(cfg.data.boilerplate_min_documents, documents // 20))
    return fit_records(train, need, cfg.data.boilerplate_max_share)


def _loss_trainer(cfg, run, generator, records):
    from medtune.data.templates import data_examples
    from medtune.evaluate.loss import loss_trainer

    return loss_trainer(cfg, run, generator.model, generator.tokenizer, data_examples(records, cfg.data))


def item_scores(losses: list[dict], answers: list[str], references: list[str], cfg) -> dict[str, tuple[list[float], list[float] | None]]:
    """Per-item values (and weights) of every metric: ``{metric: (values, weights)}``."""
    from medtune.evaluate.metrics import bleu_items, rouge_items

    tokens = [r["tokens"] for r in losses]
    scores = {
        "eval_loss": ([r["loss_sum"] / max(r["tokens"], 1) for r in losses], tokens),
        "token_accuracy": ([r["correct"] / max(r["tokens"], 1) for r in losses], tokens),
        "bleu": (bleu_items(answers, references), None),
    }
    rouge = rouge_items(answers, references)
    for key in ("rouge1", "rouge2", "rougeL"):
        scores[key] = ([r[key] for r in rouge], None)
    return scores


def _add_bertscore(per_item: dict, answers: dict, references: list[str], cfg) -> None:
    if not cfg.eval.bertscore_model or not references:
        return
    from medtune.evaluate.metrics import bertscore_items

    for name in per_item:
        rows = bertscore_items(answers[name], references, cfg.eval.bertscore_model, cfg.eval.bertscore_layers)
        for key in ("bertscore_precision", "bertscore_recall", "bertscore_f1"):
            per_item[name][key] = ([r[key] for r in rows], None)


def _transform(metric: str):
    """Perplexity is exp(mean loss): its interval is the loss interval, exponentiated."""
    return (lambda x: math.exp(x)) if metric == "perplexity" else None


def _source(metric: str) -> str:
    return "eval_loss" if metric == "perplexity" else metric


def summarize(scores: dict, cfg) -> tuple[dict[str, float], dict[str, list[float] | None]]:
    """``({metric: value}, {metric: [lo, hi]})``."""
    from medtune.evaluate.bootstrap import metric_ci

    values, cis = {}, {}
    for m in METRICS:
        if _source(m) not in scores:
            continue
        v, w = scores[_source(m)]
        out = metric_ci(v, w, cfg.eval.bootstrap_samples, cfg.eval.bootstrap_seed, _transform(m))
        values[m], cis[m] = out["value"], out["ci"]
    return values, cis


def differences(base: dict, tuned: dict, cfg) -> dict[str, dict]:
    """tuned − base per metric with a paired-bootstrap interval and ``significant``."""
    from medtune.evaluate.bootstrap import paired_difference

    out = {}
    for m in METRICS:
        if _source(m) not in base:
            continue
        (vb, wb), (vt, wt) = base[_source(m)], tuned[_source(m)]
        out[m] = paired_difference(vb, vt, wb, wt, cfg.eval.bootstrap_samples, cfg.eval.bootstrap_seed, _transform(m))
    return out


def _retriever(cfg):
    """The retriever over ``retrieval.index`` (None without one; ``eval.grounded`` needs one), built first from
    ``retrieval.sources`` when the directory holds no index yet (``medtune index CONFIG --out`` does the same)."""
    if not cfg.retrieval.index:
        if cfg.eval.grounded:
            raise ValueError("eval.grounded: true needs an index to answer from (retrieval.index, or medtune eval --index)")
        return None
    from pathlib import Path

    from medtune.retrieval import Retriever
    from medtune.retrieval.index import Index

    if cfg.retrieval.sources and not (Path(cfg.retrieval.index) / "manifest.json").exists():
        log.info("building the index %s from retrieval.sources (%d)", cfg.retrieval.index, len(cfg.retrieval.sources))
        Index.build(cfg.retrieval.index, cfg.retrieval.sources, cfg.retrieval, progress=True).close()
    return Retriever(cfg.retrieval)


def _grounded(generator, cfg, run: RunDir, conversations: list[list[dict]], references: list[str], retriever) -> dict:
    """The tuned model with vs without retrieval on the held-out questions; the per-item answers go to a file."""
    import json

    from medtune.evaluate.grounded import compare_grounding

    result = compare_grounding(generator, cfg, [c[-1]["content"] for c in conversations], references, retriever, progress=True)
    run.eval.mkdir(parents=True, exist_ok=True)
    write_text(run.eval / "grounded_answers.jsonl", "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.pop("answers")))
    return {**result, "index": cfg.retrieval.index}


def _corpus_bleu(answers: list[str], references: list[str]) -> float | None:
    from medtune.evaluate.metrics import corpus_bleu

    return corpus_bleu(answers, references) if references else None


def _mcq_items(bench, cfg):
    from medtune.evaluate.mcq import load_benchmark

    return load_benchmark(bench, cfg.eval.bootstrap_seed)


def _score_mcq(generator, cfg, items):
    from medtune.evaluate.mcq import evaluate_benchmark

    summary, rows = evaluate_benchmark(generator, items, cfg.eval.mcq_mode, cfg.generation, cfg.eval.mcq_batch_size,
                                       cfg.eval.bootstrap_samples, cfg.eval.bootstrap_seed, progress=True,
                                       precision=cfg.eval.mcq_precision, recheck_margin=cfg.eval.mcq_recheck_margin)
    return summary, rows


def _mcq_entry(by_model: dict, cfg) -> dict:
    """``{"base": summary, "finetuned": summary, "difference": paired accuracy difference}``."""
    from medtune.evaluate.bootstrap import paired_difference

    entry = {name: summary for name, (summary, _) in by_model.items()}
    if len(by_model) == 2:
        first = entry["finetuned"]["mode"]
        hits = {n: [float(r["choice"] == r["answer"]) for r in rows[first]] for n, (_, rows) in by_model.items()}
        samples, seed = cfg.eval.bootstrap_samples, cfg.eval.bootstrap_seed
        entry["difference"] = paired_difference(hits["base"], hits["finetuned"], samples=samples, seed=seed)
    return entry


def _safety_items(cfg) -> list[dict]:
    from medtune.evaluate.safety import load_suite

    return load_suite(per_category=cfg.eval.safety_limit)


def _safety(generator, cfg, items) -> dict:
    """Pass rates per category through the ask path (answers capped at eval.max_new_tokens)."""
    from medtune.evaluate.safety import run_safety_suite

    capped = cfg.model_copy(update={"generation": cfg.generation.model_copy(update={"max_new_tokens": cfg.eval.max_new_tokens})})
    result = run_safety_suite(generator, capped, items, progress=True)
    return {"n": result["n"], "pass_rate": result["pass_rate"], "categories": result["categories"]}
