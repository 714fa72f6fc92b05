"""Text normalisation for triage: the form every rule and the semantic detector see."""

from __future__ import annotations

import re
import unicodedata

_QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201b": "'", "`": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": " - "}
)
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad]")


def normalise(text: str) -> str:
    """Lower-case, NFKC, plain quotes and dashes, no invisible characters, single spaces."""
    text = unicodedata.normalize("NFKC", text or "").translate(_QUOTES)
    text = _INVISIBLE.sub("", text).lower()
    return re.sub(r"\s+", " ", text).strip()


def segments(norm: str, min_words: int = 3, limit: int = 8) -> list[str]:
    """The whole text plus its sentences/clauses (of at least ``min_words`` words)."""
    parts = [p.strip(" ,;:-") for p in re.split(r"[.!?;\n]+|\s-\s|,\s*(?:but|and then|so)\s", norm)]
    parts = [p for p in parts if len(p.split()) >= min_words and p != norm]
    return [norm, *parts[:limit]] if norm else []
