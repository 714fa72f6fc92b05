"""Citation checks on a grounded answer: ``[n]`` markers against the passages the model was given.

* ``Citations`` fixes the markers of one answer, marker by marker as the text arrives (a whole answer
  with ``fix``, a streamed one with ``stream``, which holds back only an unfinished ``[...`` until it
  closes, so what streams is what the whole answer holds):
  a number outside 1..n (a passage that was not retrieved) is removed (``[1, 7]`` becomes ``[1]``);
  with ``move``, a marker whose passages do not hold the sentence before it is moved to the retrieved
  passage that holds it best, when one does (a small model often cites ``[1]`` for what ``[2]`` says).
  ``original`` keeps the answer with only the first fix: the model's own attribution, still measured.
* ``support`` checks each sentence that cites a passage: supported when at least ``lexical`` of its
  content words (stemmed, stopwords out) occur in the cited passage, or when its embedding cosine to
  the passage reaches ``cosine``. A sentence citing several passages needs one of them to support it;
  with ``documents``, also counted per document (another retrieved passage of the cited document holds it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

_MARKER = r"\[(\d+(?:\s*,\s*\d+)*)\]"
CITATION = re.compile(rf"\s?{_MARKER}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[a-z0-9]{3,}")
_LEADING = re.compile(rf"(?:\s*{_MARKER})+")
_HOLD = 12
"""An open '[' is held back for at most this many characters while streaming."""
_MIN_WORDS = 3
"""A citation moves only for a sentence with at least this many content words (a short one matches anything)."""
_TAIL = 2000
"""Characters of the text already fixed that are kept to find the sentence a marker closes."""


class Citations:
    """The ``[n]`` markers of one grounded answer, fixed as the text arrives; counts ``removed`` and ``moved``."""

    def __init__(self, passages: Sequence[str], lexical: float = 0.5, move: bool = True):
        self.n, self.lexical, self.move = len(passages), lexical, move
        self.bags = [set(_words(p)) for p in passages] if move else []
        self.removed = self.moved = 0
        self.original = ""
        """The text with only citations to passages that were not retrieved removed (the model's own attribution)."""
        self._tail = ""

    def fix(self, text: str) -> str:
        """The next piece of the answer, fixed (pieces must come in order and not cut a marker)."""
        out, original, last = [], [], 0
        for m in CITATION.finditer(text):
            out.append(text[last:m.start()])
            original.append(text[last:m.start()])
            last = m.end()
            lead = m.group(0)[: len(m.group(0)) - len(m.group(0).lstrip())]
            numbers = _numbers(m.group(0))
            valid = [x for x in numbers if 1 <= x <= self.n]
            self.removed += len(numbers) - len(valid)
            if not valid:
                continue
            original.append(f"{lead}[{', '.join(map(str, valid))}]")
            if self.move:
                valid = self._attribute(_last_sentence(self._tail + "".join(out)), valid)
            out.append(f"{lead}[{', '.join(map(str, valid))}]")
        out.append(text[last:])
        original.append(text[last:])
        fixed = "".join(out)
        self.original += "".join(original)
        self._tail = (self._tail + fixed)[-_TAIL:]
        return fixed

    def stream(self, pieces: Iterable[str]) -> Iterator[str]:
        """``fix`` over a stream of text pieces cut anywhere."""
        held = ""
        for piece in pieces:
            held += piece
            cut = _safe_end(held)
            if cut:
                text = self.fix(held[:cut])
                held = held[cut:]
                if text:
                    yield text
        if held:
            yield self.fix(held)

    def _attribute(self, claim: str, numbers: list[int]) -> list[int]:
        words = _words(claim)
        if len(words) < _MIN_WORDS:
            return numbers
        share = [_share(words, bag) for bag in self.bags]
        if any(share[n - 1] >= self.lexical for n in numbers):
            return numbers
        best = max(range(self.n), key=share.__getitem__)
        if share[best] < self.lexical:
            return numbers  # no passage holds it: left as cited, counted unsupported by ``support``
        self.moved += 1
        return [best + 1]


def _last_sentence(text: str) -> str:
    """The sentence a citation at the end of ``text`` belongs to ('... pressure [1]' or '... pressure. [1]')."""
    parts = [p for p in _SENTENCE_END.split(text) if CITATION.sub("", p).strip()]
    return CITATION.sub("", parts[-1]) if parts else ""


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
    out: list[tuple[str, list[int]]] = []
    for part in (p for p in _SENTENCE_END.split(text) if p.strip()):
        lead = _LEADING.match(part)
        if lead and out:  # '[1]' opening a part closes the sentence before it
            out[-1][1].extend(_numbers(lead.group(0)))
            part = part[lead.end():]
        claim = CITATION.sub("", part).strip()
        if claim:
            out.append((claim, _numbers(part)))
    return [(claim, numbers) for claim, numbers in out if numbers]


def _share(words: list[str], bag: set[str]) -> float:
    """The share of a sentence's content words that a passage holds (the lexical support test)."""
    return sum(w in bag for w in words) / len(words) if words else 0.0


def _numbers(text: str) -> list[int]:
    return [int(x) for m in CITATION.finditer(text) for x in re.split(r"\s*,\s*", m.group(1))]


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
        return _share(words, bags[i]) >= lexical or (sims is not None and sims[row, i] >= cosine)

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
