"""An index of passages: dense vectors (sentence-transformers MiniLM) + BM25 (``bm25s``), fused by reciprocal rank.

An index directory::

    manifest.json     format, encoder, passage settings, backend, counts, licences, and per source its
                      path, content hash (SHA-256), documents, passages and skipped input
    passages.jsonl    one passage a line (id, doc_id, text, title, url, source, license), in vector-id order
    dense.faiss       FAISS index + vectors-NNN.npy shards (backend faiss), or qdrant/ (Qdrant local mode;
                      nothing here for a Qdrant server, whose URL and collection the manifest names)
    bm25/             the bm25s index (English stopwords, Snowball stemming)

``build`` encodes every passage once. ``add`` appends documents: only the new passages are encoded
and added to the dense store (an IVF index keeps the clusters it learnt); BM25, which has no
incremental update, is re-indexed from ``passages.jsonl`` (seconds per 100k passages, no encoding).
Both rankers see ``title + text``. A hit's ``score`` is the cosine similarity of question and passage
(what ``retrieval.threshold`` compares against); ``rrf`` is its fused score.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from medtune.core.assets import sha256_file
from medtune.core.atomic import write_json
from medtune.core.config import IndexSourceConfig, RetrievalConfig
from medtune.data.errors import DataError, SkipLog
from medtune.retrieval.passages import Document, Passage, read_documents, split
from medtune.retrieval.stores import FaissStore, QdrantStore, StoreError

log = logging.getLogger(__name__)

FORMAT = 1
ENCODE_CHUNK = 2048
"""Passages encoded per progress step."""


@dataclass
class Hit:
    passage: dict
    score: float
    """Cosine similarity between the question and the passage (dense encoder)."""
    rrf: float = 0.0
    """Fused score (reciprocal rank; for a single ranker, 1/(rrf_k + rank))."""

    def source(self) -> dict:
        """``{id, title, url, score}`` as answers list it."""
        p = self.passage
        return {"id": p["id"], "title": p["title"], "url": p["url"], "score": round(self.score, 4)}


class Index:
    def __init__(self, path: Path, manifest: dict, passages: list[dict], store, bm25):
        self.path, self.manifest, self.passages, self.store, self.bm25 = path, manifest, passages, store, bm25
        self._encoder = None

    # building -----------------------------------------------------------------------------------

    @classmethod
    def build(cls, out: str | Path, sources: Sequence[IndexSourceConfig], cfg: RetrievalConfig, progress: bool = False) -> Index:
        out = Path(out)
        if (out / "manifest.json").exists():
            raise FileExistsError(f"{out}: already holds an index (use --add to append, or another --out)")
        if not sources:
            raise ValueError("no sources to index (retrieval.sources is empty)")
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT, "encoder": cfg.encoder, "passage_tokens": cfg.passage_tokens, "overlap_tokens": cfg.overlap_tokens,
                    "backend": cfg.backend, "faiss_factory": cfg.faiss_factory if cfg.backend == "faiss" else None,
                    "qdrant": {"url": cfg.qdrant_url, "collection": cfg.qdrant_collection} if cfg.backend == "qdrant" else None,
                    "created": _now(), "sources": [], "passages": 0, "documents": 0, "licenses": {}, "versions": _versions()}
        index = cls(out, manifest, [], None, None)
        index._append(sources, progress)
        return index

    @classmethod
    def open(cls, path: str | Path, cfg: RetrievalConfig | None = None) -> Index:
        path = Path(path)
        if not (path / "manifest.json").exists():
            raise FileNotFoundError(f"{path}: not an index directory (no manifest.json; build one with `medtune index`)")
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        with open(path / "passages.jsonl", encoding="utf-8") as f:
            passages = [json.loads(line) for line in f if line.strip()]
        if manifest["backend"] == "qdrant":
            q = manifest["qdrant"]
            store = QdrantStore.open(path, q["collection"], q["url"], cfg.qdrant_api_key if cfg else None)
        else:
            store = FaissStore.open(path)
        if len(store) != len(passages):
            raise StoreError(f"{path}: {len(passages)} passages but {len(store)} vectors (an interrupted build or --add?)")
        import bm25s

        return cls(path, manifest, passages, store, bm25s.BM25.load(str(path / "bm25"), mmap=True, show_progress=False))

    def add(self, sources: Sequence[IndexSourceConfig], progress: bool = False) -> dict:
        """Append the documents of ``sources`` (a document already indexed is counted, not added); returns the counts."""
        return self._append(sources, progress)

    def _append(self, sources: Sequence[IndexSourceConfig], progress: bool) -> dict:
        known = {p["doc_id"] for p in self.passages}
        tokenizer = self.encoder.tokenizer
        new: list[Passage] = []
        added = {"documents": 0, "passages": 0, "skipped": 0}
        for spec in sources:
            skips = SkipLog()
            start = time.perf_counter()
            docs = read_documents(spec, skips)
            fresh: list[Document] = []
            for d in docs:
                if d.id in known:
                    skips.add(DataError(spec.path, f"document {d.id!r} is already in the index", field="id"))
                else:
                    known.add(d.id)
                    fresh.append(d)

            def count(texts: list[str]) -> list[int]:
                return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]

            passages = list(split(fresh, count, self.manifest["passage_tokens"], self.manifest["overlap_tokens"]))
            new.extend(passages)
            entry = {"path": str(spec.path), "kind": spec.kind, "sha256": content_hash(Path(spec.path)), "documents": len(fresh),
                     "passages": len(passages), "skipped": skips.to_dict(), "added": _now(),
                     "read_seconds": round(time.perf_counter() - start, 1)}
            self.manifest["sources"].append(entry)
            added["documents"] += len(fresh)
            added["passages"] += len(passages)
            added["skipped"] += skips.total
            log.info("%s: %d documents, %d passages, %d skipped", spec.path, len(fresh), len(passages), skips.total)
        if not new and self.store is None:
            raise DataError(", ".join(s.path for s in sources), "no passages to index (every document was empty or skipped)")
        rows = [p.to_dict() for p in new]
        start = time.perf_counter()
        vectors = self.encode([_indexed_text(r) for r in rows], progress=progress)
        added["encode_seconds"] = round(time.perf_counter() - start, 1)
        if self.store is None:
            self.store = self._create_store(vectors.shape[1])
            self.manifest["dim"] = int(vectors.shape[1])
        if len(rows):
            self.store.add(vectors, rows)
        self.passages.extend(rows)
        with open(self.path / "passages.jsonl", "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        self._index_bm25(progress)
        self.store.save()
        self._write_manifest()
        return added

    def _create_store(self, dim: int):
        m = self.manifest
        if m["backend"] == "qdrant":
            return QdrantStore.create(self.path, dim, m["qdrant"]["collection"], m["qdrant"]["url"])
        return FaissStore.create(self.path, dim, m["faiss_factory"])

    def _index_bm25(self, progress: bool) -> None:
        import bm25s

        tokens = bm25s.tokenize([_indexed_text(p) for p in self.passages], stopwords="en", stemmer=_stemmer(), show_progress=progress)
        self.bm25 = bm25s.BM25()
        self.bm25.index(tokens, show_progress=progress)
        self.bm25.save(str(self.path / "bm25"), show_progress=False)

    def _write_manifest(self) -> None:
        m = self.manifest
        m["passages"], m["documents"] = len(self.passages), len({p["doc_id"] for p in self.passages})
        licenses: dict[str, int] = {}
        for p in self.passages:
            licenses[p["license"]] = licenses.get(p["license"], 0) + 1
        m["licenses"], m["updated"], m["store"] = licenses, _now(), self.store.describe()
        write_json(self.path / "manifest.json", m, indent=2, ensure_ascii=False)

    # searching ----------------------------------------------------------------------------------

    @property
    def encoder(self):
        """The manifest's ``SentenceTransformer`` (shared with semantic triage when it is the same one)."""
        if self._encoder is None:
            from medtune.guardrails.semantic import load_encoder

            self._encoder = load_encoder(self.manifest["encoder"]).model
        return self._encoder

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        chunks = [texts[i:i + ENCODE_CHUNK] for i in range(0, len(texts), ENCODE_CHUNK)]
        out = [self.encoder.encode(c, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
               for c in tqdm(chunks, desc="encoding passages", unit_scale=ENCODE_CHUNK, disable=not progress or len(chunks) < 2)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.encoder.get_sentence_embedding_dimension()), np.float32)

    def search(self, query: str, k: int = 3, cfg: RetrievalConfig | None = None, mode: str | None = None) -> list[Hit]:
        return self.search_batch([query], k, cfg, mode)[0]

    def search_batch(self, queries: list[str], k: int = 3, cfg: RetrievalConfig | None = None, mode: str | None = None) -> list[list[Hit]]:
        """Top-``k`` hits per query: BM25 and dense rankings (``cfg.candidates`` each) fused by reciprocal rank."""
        cfg = cfg or RetrievalConfig()
        mode = mode or cfg.mode
        n = min(max(cfg.candidates, k), len(self.passages))
        if n == 0:
            return [[] for _ in queries]
        q = self.encode(queries)
        dense = self.store.search(q, n, cfg.nprobe, cfg.ef_search)[1] if mode != "bm25" else None
        sparse = self._bm25(queries, n) if mode != "dense" else None
        results = []
        for row in range(len(queries)):
            rankings = [[int(i) for i in r[row] if i >= 0] for r in (dense, sparse) if r is not None]
            fused = rrf(rankings, cfg.rrf_k)[:k]
            cosines = self.store.vectors([i for i, _ in fused]) @ q[row] if fused else []
            results.append([Hit(self.passages[i], float(c), s) for (i, s), c in zip(fused, cosines, strict=True)])
        return results

    def _bm25(self, queries: list[str], n: int) -> list[list[int]]:
        import bm25s

        vocab = self.bm25.vocab_dict
        tokens = bm25s.tokenize(queries, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)
        out = []
        for toks in tokens:
            toks = [t for t in toks if t in vocab]
            if not toks:
                out.append([])
                continue
            docs, scores = self.bm25.retrieve([toks], k=n, show_progress=False, n_threads=1)
            out.append([int(d) for d, s in zip(docs[0], scores[0], strict=True) if s > 0])
        return out

    def close(self) -> None:
        if hasattr(self.store, "close"):
            self.store.close()


def rrf(rankings: Sequence[Sequence[int]], k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: ``(id, sum over rankings of 1/(k + rank))``, best first (ties: first seen)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking, start=1):
            scores[i] = scores.get(i, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def content_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's sorted (relative path, file SHA-256) list."""
    import hashlib

    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def _indexed_text(p: dict) -> str:
    return f"{p['title']}\n{p['text']}" if p.get("title") else p["text"]


def _stemmer():
    try:
        import Stemmer
    except ModuleNotFoundError:
        return None
    return Stemmer.Stemmer("english").stemWords


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("faiss-cpu", "bm25s", "sentence-transformers", "qdrant-client"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
