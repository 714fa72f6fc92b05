"""Semantic triage: nearest exemplars in a sentence-transformers embedding space.

The encoder is ``sentence_transformers.SentenceTransformer`` on the built-in all-MiniLM-L6-v2
directory (``medtune.core.assets.builtin_encoder_dir``), a local directory or a Hub id, always on
the CPU. sentence-transformers (and torch) are imported on first use only.
"""

from __future__ import annotations

import json
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from medtune.core.assets import BUILTIN_DIR, builtin_encoder_dir
from medtune.core.config import BUILTIN_ENCODER
from medtune.guardrails.normalise import normalise
from medtune.guardrails.rules import LABELS

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

EXEMPLARS_PATH = BUILTIN_DIR / "triage_exemplars.jsonl"

SEMANTIC_TOP_K = 3
"""Per class, the mean similarity of this many nearest exemplars is the class score."""
SEMANTIC_FLOOR = 0.35
"""A non-general class score below this never counts, however far it leads the general class."""
SMALL_BATCH = 16
"""Up to this many texts (a triage: one turn and its sentences) are encoded on one thread."""
_ONE_THREAD = threading.Lock()


class EncoderError(RuntimeError):
    """The configured sentence encoder cannot be loaded."""


def load_sentence_transformer(reference: str):
    """``SentenceTransformer`` for 'builtin-minilm', a local directory or a Hub id, on the CPU.

    A Hub id is taken from the local cache when it is there; otherwise one quick request checks
    that the Hub is reachable and knows the id before downloading, so that an offline machine
    fails at once with a clear message instead of retrying for a minute.
    """
    from sentence_transformers import SentenceTransformer

    if reference == BUILTIN_ENCODER:
        return SentenceTransformer(str(builtin_encoder_dir()), device="cpu", local_files_only=True)
    if Path(reference).expanduser().is_dir():
        return SentenceTransformer(str(Path(reference).expanduser()), device="cpu", local_files_only=True)
    try:
        return SentenceTransformer(reference, device="cpu", local_files_only=True)
    except OSError:
        pass  # not cached
    from huggingface_hub import HfApi, constants

    hint = f"use '{BUILTIN_ENCODER}' or a local sentence-transformers directory"
    if constants.HF_HUB_OFFLINE:
        raise EncoderError(f"sentence encoder {reference!r}: not a local directory nor cached, and HF_HUB_OFFLINE is set; {hint}")
    try:
        HfApi().model_info(reference, timeout=10)
    except Exception as err:
        raise EncoderError(
            f"sentence encoder {reference!r}: not a local directory nor cached, and the Hugging Face Hub cannot provide it "
            f"({type(err).__name__}: {err}); {hint}"
        ) from None
    log.info("downloading sentence encoder %s", reference)
    return SentenceTransformer(reference, device="cpu")


class Encoder:
    """L2-normalised sentence embeddings (a torch tensor, one row per text)."""

    def __init__(self, reference: str):
        self.reference = reference
        self.model = load_sentence_transformer(reference)

    def encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        import torch

        if len(texts) > SMALL_BATCH:
            return self._encode(texts, batch_size)
        with _ONE_THREAD:  # a handful of short sentences: one thread is as fast, and far faster on a busy CPU
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return self._encode(texts, batch_size)
            finally:
                torch.set_num_threads(previous)

    def _encode(self, texts: list[str], batch_size: int) -> torch.Tensor:
        return self.model.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)


@lru_cache(maxsize=4)
def load_encoder(reference: str) -> Encoder:
    return Encoder(reference)


def load_exemplars(path: Path = EXEMPLARS_PATH) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [r for r in rows if r.get("label") not in LABELS or not r.get("text")]
    if bad:
        raise ValueError(f"{path}: {len(bad)} exemplar rows without text or with an unknown label, e.g. {bad[0]}")
    return rows


class SemanticClassifier:
    """Nearest-exemplar classifier: class score = mean cosine of its ``top_k`` nearest exemplars."""

    def __init__(self, encoder: Encoder, exemplars: list[dict], top_k: int = SEMANTIC_TOP_K):
        self.encoder = encoder
        self.texts = [r["text"] for r in exemplars]
        self.labels = [r["label"] for r in exemplars]
        self.matrix = encoder.encode([normalise(t) for t in self.texts])
        self.top_k = top_k
        self.index = {label: [i for i, lab in enumerate(self.labels) if lab == label] for label in LABELS}

    def scores(self, texts: list[str]) -> list[dict[str, tuple[float, int]]]:
        """Per text: label -> (score, index of the nearest exemplar of that label)."""
        sims = self.encoder.encode(texts) @ self.matrix.T
        out = []
        for row in sims:
            per_label = {}
            for label, idx in self.index.items():
                if not idx:
                    continue
                values, order = row[idx].sort(descending=True)
                per_label[label] = (float(values[: self.top_k].mean()), idx[int(order[0])])
            out.append(per_label)
        return out


_CLASSIFIER_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _build_classifier(encoder: str, exemplars_mtime: float) -> SemanticClassifier:
    return SemanticClassifier(load_encoder(encoder), load_exemplars())


def cached_classifier(encoder: str) -> SemanticClassifier:
    """One classifier per (encoder, exemplar file version), shared by instances."""
    with _CLASSIFIER_LOCK:
        return _build_classifier(encoder, EXEMPLARS_PATH.stat().st_mtime)
