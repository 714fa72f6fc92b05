"""What the answer path asks of retrieval: the passages for a question, then the checks on the answer.

``Retriever.ground(question)`` gives a ``Grounding``: the top ``k`` hits, and whether the best one
reaches ``retrieval.threshold`` (``found``). ``Retriever.citations(grounding)`` fixes the answer's
``[n]`` markers as it is written (``cite.Citations``); ``Retriever.check`` then counts how many cited
sentences their passages hold, for the answer as shown and as the model cited.
One ``Index`` is opened per directory and shared (``open_index``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from medtune.core.config import RetrievalConfig
from medtune.data.grounding import NOT_FOUND, grounded_system, sources_list
from medtune.retrieval.cite import Citations, support
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

    def citations(self, grounding: Grounding) -> Citations:
        """The citation fixer of one grounded answer (whole or streamed)."""
        return Citations(_texts(grounding), self.cfg.support_threshold, self.cfg.move_citations)

    def check(self, answer: str, grounding: Grounding, cites: Citations) -> dict:
        """Citation statistics of a fixed grounded answer, and of the model's own attribution (``model_*``)."""
        passages, documents = _texts(grounding), [h.passage["doc_id"] for h in grounding.hits]  # every passage has one
        check = lambda text: support(text, passages, self.index.encoder, self.cfg.support_threshold,  # noqa: E731
                                     self.cfg.support_cosine, documents)
        stats = {**check(answer), "removed": cites.removed, "moved": cites.moved}
        own = check(cites.original) if cites.moved else stats
        return {**stats, "model_supported": own["supported"], "model_precision": own["precision"]}


def _texts(grounding: Grounding) -> list[str]:
    return [f"{h.passage['title']}. {h.passage['text']}" for h in grounding.hits]
