"""Citation checks on a grounded answer: ``[n]`` markers against the passages the model was given.

* ``strip_invalid`` removes a citation to a passage that was not retrieved (``[7]`` when three were
  given; ``[1, 7]`` becomes ``[1]``). ``CitationFilter`` does the same to a streamed answer, holding
  back only an unfinished ``[...`` until it closes, so what streams is what the final answer holds.
* ``support`` checks each sentence that cites a passage: supported when at least ``lexical`` of its
  content words (stemmed, stopwords out) occur in the cited passage, or when its embedding cosine to
  the passage reaches ``cosine``. A sentence citing several passages needs one of them to support it;
  with ``documents``, also counted per document (another retrieved passage of the cited document holds it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

CITATION = re.compile(r"\s?\[(\d+(?:\s*,\s*\d+)*)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[a-z0-9]{3,}")
_HOLD = 12
"""An open '[' is held back for at most this many characters while streaming."""


def strip_invalid(text: str, n_passages: int) -> tuple[str, int]:
    """``text`` without citations to passages outside 1..n_passages, and how many were removed."""
    removed = 0

    def keep(match: re.Match) -> str:
        nonlocal removed
        numbers = [int(x) for x in re.split(r"\s*,\s*", match.group(1))]
        valid = [x for x in numbers if 1 <= x <= n_passages]
        removed += len(numbers) - len(valid)
        if not valid:
            return ""
        lead = match.group(0)[: len(match.group(0)) - len(match.group(0).lstrip())]
        return f"{lead}[{', '.join(map(str, valid))}]"

    return CITATION.sub(keep, text), removed


class CitationFilter:
    """``strip_invalid`` over a stream of text pieces; ``removed`` counts what it took out."""

    def __init__(self, pieces: Iterable[str], n_passages: int):
        self.pieces, self.n, self.removed = pieces, n_passages, 0

    def __iter__(self) -> Iterator[str]:
        held = ""
        for piece in self.pieces:
            held += piece
            cut = _safe_end(held)
            if cut:
                text, removed = strip_invalid(held[:cut], self.n)
                self.removed += removed
                held = held[cut:]
                if text:
                    yield text
        if held:
            text, removed = strip_invalid(held, self.n)
            self.removed += removed
            yield text


def _safe_end(text: str) -> int:
    """How much of ``text`` can go out now: all but an unclosed '[' near the end (and the space before it)."""
    start = text.rfind("[")
    if start == -1 or "]" in text[start:] or len(text) - start > _HOLD:
        end = len(text)
        return end - 1 if text.endswith(" ") else end  # a space may precede a citation that gets removed
    return start - 1 if start and text[start - 1] == " " else start


def cited_sentences(text: str) -> list[tuple[str, list[int]]]:
    """``(sentence without markers, cited numbers)`` for every sentence with at least one citation.

    A citation right after a sentence's full stop ('... pressure. [1]') belongs to that sentence."""
    out = []
    parts = [p for p in _SENTENCE_END.split(text) if p.strip()]
    for part in parts:
        numbers = [int(x) for m in CITATION.finditer(part) for x in re.split(r"\s*,\s*", m.group(1))]
        claim = CITATION.sub("", part).strip()
        if numbers and not claim and out:  # a bare '[1]' after the sentence it cites
            out[-1][1].extend(numbers)
        elif numbers:
            out.append((claim, numbers))
    return out


def support(text: str, passages: Sequence[str], encoder=None, lexical: float = 0.5, cosine: float = 0.6,
            documents: Sequence[str] | None = None) -> dict:
    """Citation statistics of an answer: sentences cited, supported, unsupported, and the precision.

    ``documents`` (the document of each passage) adds ``document_supported`` / ``document_precision``:
    a sentence whose cited passage does not hold it, but another retrieved passage of the same document
    does. The Sources list names documents, so that is what a reader who follows a citation can check;
    ``precision`` stays the strict, per-passage figure."""
    claims = [(c, [n for n in nums if 1 <= n <= len(passages)]) for c, nums in cited_sentences(text)]
    claims = [(c, nums) for c, nums in claims if nums and c]
    sims = None
    if encoder is not None and claims:
        vectors = encoder.encode([c for c, _ in claims] + list(passages), normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
        sims = vectors[: len(claims)] @ vectors[len(claims):].T
    bags = [set(_words(p)) for p in passages]

    def holds(row: int, words: list[str], i: int) -> bool:
        overlap = sum(w in bags[i] for w in words) / len(words) if words else 0.0
        return overlap >= lexical or (sims is not None and sims[row, i] >= cosine)

    supported = in_document = 0
    for row, (claim, nums) in enumerate(claims):
        words = _words(claim)
        ok = any(holds(row, words, n - 1) for n in nums)
        supported += ok
        if documents is not None:
            same = {i for n in nums for i, d in enumerate(documents) if d == documents[n - 1]}
            in_document += ok or any(holds(row, words, i) for i in same)
    stats = {
        "citations": len(CITATION.findall(text)),
        "cited_sentences": len(claims),
        "supported": supported,
        "unsupported": len(claims) - supported,
        "precision": round(supported / len(claims), 4) if claims else None,
    }
    if documents is not None:
        stats.update(document_supported=in_document, document_precision=round(in_document / len(claims), 4) if claims else None)
    return stats


def _words(text: str) -> list[str]:
    from bm25s.stopwords import STOPWORDS_EN

    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS_EN]
    try:
        import Stemmer
    except ModuleNotFoundError:
        return words
    return Stemmer.Stemmer("english").stemWords(words)
