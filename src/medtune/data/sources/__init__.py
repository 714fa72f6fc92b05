"""One adapter per corpus, all with the same interface::

    load(path, *, on_error="raise", skips=None, limit=None, **options) -> list[Record]

plus module constants ``LICENSE`` (default licence tag) and ``HUB_IDS`` (the community's Hugging
Face dataset ids). ``path`` is a local file (or folder, for MedQuAD's XML); when no such file
exists and it looks like ``org/name``, the Hub dataset is read with ``datasets.load_dataset``
and its rows go through the same row mapping. Options are keyword arguments of each ``load``;
an unknown one is a ``TypeError`` that names it.
"""

from __future__ import annotations

import inspect
from types import ModuleType

from medtune.data.records import Record
from medtune.data.sources import (
    chatdoctor,
    flashcards,
    generic,
    mcq,
    medmcqa,
    medqa,
    medquad,
    notechat,
    preference,
    pubmedqa,
    reasoning,
)

SOURCES: dict[str, ModuleType] = {
    "chatdoctor": chatdoctor,
    "medquad": medquad,
    "medqa": medqa,
    "medmcqa": medmcqa,
    "pubmedqa": pubmedqa,
    "mcq": mcq,
    "reasoning": reasoning,
    "notechat": notechat,
    "flashcards": flashcards,
    "generic": generic,
    "preference": preference,
}


def load_source(kind: str, path: str, **options) -> list[Record]:
    """``SOURCES[kind].load(path, **options)``, with a clear error for an unknown kind."""
    if kind not in SOURCES:
        raise ValueError(f"unknown source kind {kind!r}; known kinds: {', '.join(sorted(SOURCES))}")
    load = SOURCES[kind].load
    accepted = [name for name in inspect.signature(load).parameters if name != "path"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"source {kind!r}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    return load(str(path), **options)
