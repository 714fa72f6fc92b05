"""``retrieval``: grounded answers from an index of trusted passages (``medtune index``, ``--index``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medtune.core.config.base import Section
from medtune.core.config.inference import BUILTIN_ENCODER


class IndexSourceConfig(Section):
    path: str
    """A MedQuAD XML folder, a PubMedQA JSON, a JSONL/CSV/Parquet file, or a folder of .txt/.md files."""
    kind: Literal["auto", "medquad", "pubmedqa", "rows", "text"] = "auto"
    """Reader: 'auto' guesses from the path (XML folder = medquad, .txt/.md folder = text, ori_pqal-shaped JSON = pubmedqa,
    other data files = rows)."""
    text: str = "text"
    """rows: column with the passage text."""
    title: str | None = "title"
    """rows: column with the document title (None or missing = the source name and row)."""
    url: str | None = "url"
    """rows: column with the document URL (None or missing = none)."""
    id: str | None = "id"
    """rows: column with a stable document id (None or missing = <source>-<line>)."""
    source: str | None = None
    """Source name kept on every passage (None = the file or folder name)."""
    license: str | None = None
    """Licence tag kept on every passage (None = the reader's default: MedQuAD cc-by-4.0, PubMedQA mit, else unknown)."""
    on_error: Literal["raise", "skip"] = "raise"
    """A bad document or row: stop with an error naming file:line:field, or count it and go on."""


class RetrievalConfig(Section):
    index: str | None = None
    """Index directory built by `medtune index` (None = answers are not grounded)."""
    k: int = Field(3, gt=0)
    """Passages put into the prompt (numbered [1]..[k])."""
    threshold: float = Field(0.35, ge=-1, le=1)
    """A question is 'found' when its best passage's cosine similarity to it (dense encoder) reaches this; else the
    answer says 'I could not find this in the indexed sources'."""
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    """Ranking: BM25 and dense fused by reciprocal rank, or one of them alone."""
    candidates: int = Field(50, gt=0)
    """Passages each ranker proposes before fusion."""
    rrf_k: int = Field(60, gt=0)
    """Reciprocal-rank-fusion constant: score = sum 1/(rrf_k + rank)."""
    not_found: Literal["ungrounded", "refuse"] = "ungrounded"
    """Nothing above the threshold: 'ungrounded' = say so, then the model's general answer without sources;
    'refuse' = say so and nothing else (the model is not called)."""
    support_threshold: float = Field(0.5, ge=0, le=1)
    """A cited sentence is supported when this share of its content words is in the cited passage (or its embedding
    cosine to the passage reaches support_cosine)."""
    support_cosine: float = Field(0.6, ge=-1, le=1)
    """Embedding cosine (sentence vs cited passage) that also counts as support."""
    move_citations: bool = True
    """A citation whose passage does not hold its sentence (support_threshold) moves to the retrieved passage that
    holds it best, when one does; the model's own attribution is still measured (citations.model_precision)."""
    nprobe: int = Field(16, gt=0)
    """IVF indexes: clusters searched per query."""
    ef_search: int = Field(64, gt=0)
    """HNSW indexes: search breadth."""
    # building (`medtune index`): stored in the index manifest, read from there when searching
    sources: list[IndexSourceConfig] = []
    """What `medtune index CONFIG` reads."""
    encoder: str = BUILTIN_ENCODER
    """Sentence encoder for passages and questions: 'builtin-minilm', a local directory or an HF id."""
    passage_tokens: int = Field(200, ge=16)
    """Longest passage in encoder tokens (MiniLM reads 256 at most)."""
    overlap_tokens: int = Field(40, ge=0)
    """Tokens a passage repeats from the end of the one before it (same section only)."""
    backend: Literal["faiss", "qdrant"] = "faiss"
    """Where dense vectors live: FAISS files in the index directory, or a Qdrant collection."""
    faiss_factory: str = "Flat"
    """FAISS index factory string: 'Flat' (exact), 'IVF1024,Flat', 'IVF4096,SQ8', 'HNSW32'... (inner product)."""
    qdrant_url: str | None = None
    """Qdrant server or cluster URL (None = Qdrant's local mode, stored inside the index directory)."""
    qdrant_collection: str = "medtune"
    """Qdrant collection name."""
    qdrant_api_key: str | None = None
    """Qdrant API key (the QDRANT_API_KEY environment variable also sets it)."""
