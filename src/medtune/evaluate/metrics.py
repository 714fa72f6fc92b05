"""Generation metrics against reference answers, from the field's own libraries."""

from __future__ import annotations


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
