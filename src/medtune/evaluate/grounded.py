"""Grounded vs ungrounded answers: the same model, the same questions, with and without retrieval.

Both go through ``Responder`` with the guardrails off (the raw answers eval scores elsewhere), one
with ``retrieval`` on and one with it off. Scored against the reference answers per item: ROUGE-L and
BERTScore F1 (citation markers taken out first, and the Sources list and not-found notice are not
part of the scored text: ``Answer.body``), each with a bootstrap interval and the grounded − ungrounded
difference with a paired-bootstrap one. Also reported: the not-found rate (no passage above the
threshold), the share of grounded answers that list their sources, and the citation checks
(citations per answer, removed citations, cited sentences supported by their passage = citation precision).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from medtune.evaluate.bootstrap import metric_ci, paired_difference
from medtune.evaluate.metrics import bertscore_items, rouge_items
from medtune.inference.responder import Answer, Responder
from medtune.retrieval import Retriever
from medtune.retrieval.cite import CITATION

log = logging.getLogger(__name__)


def compare_grounding(generator, cfg, questions: Sequence[str], references: Sequence[str], retriever: Retriever | None = None,
                      progress: bool = False) -> dict:
    """``{n, not_found_rate, sources_listed_rate, citations, results, ci, differences, answers}`` (see the module docstring)."""
    retriever = retriever or Retriever(cfg.retrieval)
    settings = {"max_new_tokens": cfg.eval.max_new_tokens, "temperature": cfg.eval.temperature, "progress": progress}
    log.info("answering %d questions without retrieval", len(questions))
    plain = Responder(generator, cfg, guardrails=False, retriever=False).answer_batch(list(questions), **settings)
    log.info("answering %d questions with retrieval", len(questions))
    grounded = Responder(generator, cfg, guardrails=False, retriever=retriever).answer_batch(list(questions), **settings)
    texts = {"ungrounded": [scored_text(a) for a in plain], "grounded": [scored_text(a) for a in grounded]}
    per_item: dict[str, dict[str, list[float]]] = {}
    for name, answers in texts.items():
        per_item[name] = {"rougeL": [r["rougeL"] for r in rouge_items(answers, list(references))]}
        if cfg.eval.bertscore_model:
            rows = bertscore_items(answers, list(references), cfg.eval.bertscore_model, cfg.eval.bertscore_layers)
            per_item[name]["bertscore_f1"] = [r["bertscore_f1"] for r in rows]
    samples, seed = cfg.eval.bootstrap_samples, cfg.eval.bootstrap_seed
    results, cis = {}, {}
    for name, metrics in per_item.items():
        stats = {m: metric_ci(v, None, samples, seed) for m, v in metrics.items()}
        results[name] = {m: s["value"] for m, s in stats.items()}
        cis[name] = {m: s["ci"] for m, s in stats.items()}
    differences = {m: paired_difference(per_item["ungrounded"][m], per_item["grounded"][m], None, None, samples, seed)
                   for m in per_item["grounded"]}
    found = [a for a in grounded if a.grounded]
    return {
        "n": len(questions),
        "not_found_rate": round(1 - len(found) / len(grounded), 4) if grounded else None,
        "sources_listed_rate": round(sum(bool(a.sources) and "Sources:" in a.answer for a in found) / len(found), 4) if found else None,
        "citations": citation_summary(found),
        "results": results,
        "ci": cis,
        "differences": differences,
        "answers": [{"question": q, "reference": r, "ungrounded": p.body, "grounded": g.answer, "found": g.grounded,
                     "sources": g.sources, "citations": g.citations}
                    for q, r, p, g in zip(questions, references, plain, grounded, strict=True)],
    }


def scored_text(answer: Answer) -> str:
    """What is compared with the reference: the answer itself, without citation markers, notice or Sources list."""
    return CITATION.sub("", answer.body).strip()


def citation_summary(answers: Sequence[Answer]) -> dict:
    """Citation checks over the grounded answers: totals, share of answers citing anything, precision."""
    total = {key: sum(a.citations.get(key, 0) for a in answers) for key in ("citations", "removed", "moved", "cited_sentences", "supported",
                                                                            "unsupported", "document_supported", "model_supported")}
    total["answers_citing"] = sum(a.citations.get("citations", 0) > 0 for a in answers)
    for share, count in (("precision", "supported"), ("document_precision", "document_supported"), ("model_precision", "model_supported")):
        total[share] = round(total[count] / total["cited_sentences"], 4) if total["cited_sentences"] else None
    return total
