"""What the answer path asks of retrieval: the passages for a question, then the checks on the answer.

``Retriever.ground(question)`` gives a ``Grounding``: the top ``k`` hits, and whether the best one
reaches ``retrieval.threshold`` (``found``). ``Retriever.finish(answer, grounding)`` removes
citations to passages that were not given, checks the cited sentences against their passages
(``cite.support``) and returns the answer, its citation statistics and the "Sources" list.
One ``Index`` is opened per directory and shared (``open_index``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from medtune.core.config import RetrievalConfig
from medtune.data.grounding import NOT_FOUND, grounded_system, sources_list
from medtune.retrieval.cite import CitationFilter, strip_invalid, support
from medtune.retrieval.index import Hit, Index

NOT_FOUND_UNGROUNDED = f"{NOT_FOUND} The answer below is general information, not taken from them."


@dataclass
class Grounding:
    hits: list[Hit] = field(default_factory=list)
    found: bool = False
    """The best passage reaches the threshold: the answer is grounded in ``hits``."""
    best: float | None = None
    """Cosine similarity of the best passage (None: the index is empty)."""

    @property
    def passages(self) -> list[dict]:
        return [h.passage for h in self.hits]

    @property
    def sources(self) -> list[dict]:
        """``[{id, title, url, score}]`` of the passages the answer was grounded in ([] when not found)."""
        return [h.source() for h in self.hits] if self.found else []

    def system(self, *before: str | None) -> str:
        return grounded_system(self.passages, *before)

    def sources_text(self) -> str:
        return sources_list(self.passages)


_OPEN_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _open(path: str, mtime: float, qdrant_api_key: str | None) -> Index:
    return Index.open(path, RetrievalConfig(qdrant_api_key=qdrant_api_key))


def open_index(cfg: RetrievalConfig) -> Index:
    """The index of ``cfg.index``, opened once per directory (and manifest version)."""
    manifest = Path(cfg.index) / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{cfg.index}: not an index directory (no manifest.json; build one with `medtune index`)")
    with _OPEN_LOCK:
        return _open(str(Path(cfg.index).resolve()), manifest.stat().st_mtime, cfg.qdrant_api_key)


class Retriever:
    def __init__(self, cfg: RetrievalConfig, index: Index | None = None):
        self.cfg = cfg
        self.index = index if index is not None else open_index(cfg)

    def ground(self, question: str) -> Grounding:
        hits = self.index.search(question, self.cfg.k, self.cfg)
        best = max((h.score for h in hits), default=None)
        return Grounding(hits, best is not None and best >= self.cfg.threshold, best)

    def filter(self, pieces: Iterable[str], grounding: Grounding) -> CitationFilter:
        """A streamed answer without citations to passages it was not given."""
        return CitationFilter(pieces, len(grounding.hits))

    def clean(self, answer: str, grounding: Grounding) -> tuple[str, int]:
        return strip_invalid(answer, len(grounding.hits))

    def check(self, answer: str, grounding: Grounding, removed: int = 0) -> dict:
        """Citation statistics of a (cleaned) grounded answer; ``removed``: citations already taken out."""
        passages = [f"{h.passage['title']}. {h.passage['text']}" for h in grounding.hits]
        documents = [h.passage["doc_id"] for h in grounding.hits]  # every index passage carries its document
        stats = support(answer, passages, self.index.encoder, self.cfg.support_threshold, self.cfg.support_cosine, documents)
        return {**stats, "removed": removed}
