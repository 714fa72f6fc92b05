"""Decontamination: drop training records whose question overlaps an evaluation question.

Overlap is a shared word ``n``-gram (default 13, as in GPT-3's contamination study) after the
same normalisation ``dedup`` uses (lower case, punctuation removed). An eval text shorter than
``n`` words but at least ``min_words`` long must appear whole (as a contiguous word sequence);
shorter eval texts ("Drug of choice for malaria is") are ignored, as they match too much.
Eval texts usually come from ``load_eval_texts`` (the MCQ test files, through the adapters) and
``held_out_texts`` (the run's own held-out records).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from medtune.data.clean import StepResult
from medtune.data.dedup import normalize
from medtune.data.records import Record


def decontaminate(
    records: list[Record],
    eval_texts: list[str],
    n: int = 13,
    min_words: int = 8,
    fields: tuple[str, ...] = ("question",),
) -> StepResult:
    """Drop records sharing an ``n``-gram with any eval text.

    Args:
        records: training records.
        eval_texts: questions of the evaluation sets (and held-out records).
        n: n-gram length in words.
        min_words: eval texts shorter than ``n`` but at least this long must appear whole.
        fields: record fields searched (``question``, ``answer``, ``reasoning``); for a dialogue,
            ``question`` means every user turn.

    ``dropped["eval_overlap"]`` counts the drops; ``examples["eval_overlap"]`` lists a few ids.
    """
    if n < 1 or min_words < 1:
        raise ValueError(f"n and min_words must be positive, got n={n}, min_words={min_words}")
    grams = eval_ngrams(eval_texts, n=n, min_words=min_words)
    result = StepResult(records=[])
    for r in records:
        if any(_overlaps(normalize(text), grams) for text in _texts(r, fields)):
            result.drop("eval_overlap", r)
        else:
            result.records.append(r)
    return result


def eval_ngrams(eval_texts: Iterable[str], n: int = 13, min_words: int = 8) -> dict[int, set[tuple[bytes, ...]]]:
    """Length → set of word n-grams: every ``n``-gram of long texts, short texts whole."""
    grams: dict[int, set[tuple[bytes, ...]]] = {}
    for text in eval_texts:
        words = normalize(text)
        if len(words) >= n:
            grams.setdefault(n, set()).update(zip(*(words[i:] for i in range(n))))
        elif len(words) >= min_words:
            grams.setdefault(len(words), set()).add(tuple(words))
    return grams


def overlaps(text: str, grams: dict[int, set[tuple[bytes, ...]]]) -> bool:
    """Whether ``text`` shares an n-gram of ``eval_ngrams`` (or holds a short eval text whole)."""
    return _overlaps(normalize(text), grams)


def _overlaps(words: list[bytes], grams: dict[int, set[tuple[bytes, ...]]]) -> bool:
    return any(len(words) >= size and not known.isdisjoint(zip(*(words[i:] for i in range(size)))) for size, known in grams.items())


def _texts(r: Record, fields: tuple[str, ...]) -> list[str]:
    texts = []
    for name in fields:
        if name == "question" and r.messages:
            texts.extend(m["content"] for m in r.messages if m["role"] == "user")
        elif getattr(r, name, None):
            texts.append(getattr(r, name))
    return texts


def held_out_texts(records: Iterable[Record]) -> list[str]:
    """The questions of held-out records (the MCQ stem, without the lettered options)."""
    return [r.meta.get("stem") or r.question for r in records]


def load_eval_texts(paths: Iterable[str | Path], kind: str = "mcq", **options) -> list[str]:
    """Eval questions from test files read with the ``kind`` adapter (e.g. the MCQ test sets)."""
    from medtune.data.sources import load_source

    texts: list[str] = []
    for path in paths:
        texts.extend(held_out_texts(load_source(kind, str(path), **options)))
    return texts
