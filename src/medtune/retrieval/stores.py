"""Where an index's dense vectors live, behind one small interface (``add``, ``search``, ``vectors``, ``save``).

* ``FaissStore`` (the default): a FAISS index built from a factory string (``Flat`` exact search,
  ``IVF<n>,Flat``/``IVF<n>,SQ8`` clustered, ``HNSW32`` graph; inner product on L2-normalised vectors,
  i.e. cosine), saved as ``dense.faiss`` in the index directory, plus the vectors themselves as
  float16 ``vectors-NNN.npy`` shards (one per build or ``--add``) for exact scores of the final hits.
* ``QdrantStore``: a Qdrant collection (cosine distance), in Qdrant's local mode inside the index
  directory (``qdrant/``) or on a Qdrant server/cluster (``qdrant_url``); each point carries its
  passage as payload, so the collection is useful on its own.

Vector ids are passage positions (0, 1, 2, ... in ``passages.jsonl`` order) in both.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class StoreError(ValueError):
    """A dense store that cannot be built or opened as configured."""


class FaissStore:
    def __init__(self, path: Path, index, shards: list[Path]):
        self.path, self.index, self.shards = path, index, shards
        self._arrays = [np.load(s, mmap_mode="r") for s in shards]

    @classmethod
    def create(cls, path: Path, dim: int, factory: str) -> FaissStore:
        import faiss

        try:
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise StoreError(f"retrieval.faiss_factory {factory!r}: FAISS cannot build it ({str(e).strip().splitlines()[-1]})") from None
        return cls(path, index, [])

    @classmethod
    def open(cls, path: Path) -> FaissStore:
        import faiss

        return cls(path, faiss.read_index(str(path / "dense.faiss")), sorted(path.glob("vectors-*.npy")))

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, vectors: np.ndarray, passages: list[dict] | None = None) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self.index.is_trained:  # IVF: the clusters are learnt from the first vectors it gets
            nlist = getattr(_ivf(self.index), "nlist", 1)
            if len(vectors) < nlist:
                raise StoreError(f"retrieval.faiss_factory: {nlist} IVF clusters need at least {nlist} passages to train on, "
                                 f"got {len(vectors)} (use fewer clusters, or 'Flat')")
            log.info("training the FAISS index on %d vectors", len(vectors))
            self.index.train(vectors)
        self.index.add(vectors)
        shard = self.path / f"vectors-{len(self.shards):03d}.npy"
        np.save(shard, vectors.astype(np.float16))
        self.shards.append(shard)
        self._arrays.append(np.load(shard, mmap_mode="r"))

    def search(self, queries: np.ndarray, n: int, nprobe: int = 16, ef_search: int = 64) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        ivf = _ivf(self.index)
        if ivf is not None:
            ivf.nprobe = nprobe
        hnsw = getattr(faiss.try_extract_index_ivf(self.index) or self.index, "hnsw", None)
        if hnsw is not None:
            hnsw.efSearch = max(ef_search, n)
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), n)

    def vectors(self, ids: list[int]) -> np.ndarray:
        offsets = np.cumsum([0] + [len(a) for a in self._arrays])
        rows = []
        for i in ids:
            shard = int(np.searchsorted(offsets, i, side="right")) - 1
            rows.append(np.asarray(self._arrays[shard][i - offsets[shard]], dtype=np.float32))
        return np.stack(rows) if rows else np.zeros((0, self.index.d), dtype=np.float32)

    def save(self) -> None:
        import faiss

        faiss.write_index(self.index, str(self.path / "dense.faiss"))

    def describe(self) -> dict:
        return {"backend": "faiss", "vectors": len(self)}


def _ivf(index):
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


class QdrantStore:
    def __init__(self, path: Path, client, collection: str, url: str | None):
        self.path, self.client, self.collection, self.url = path, client, collection, url

    @staticmethod
    def connect(path: Path, url: str | None, api_key: str | None = None):
        try:
            from qdrant_client import QdrantClient
        except ModuleNotFoundError:
            raise ModuleNotFoundError("retrieval.backend 'qdrant' needs qdrant-client: pip install 'medtune[qdrant]'") from None
        if url:
            return QdrantClient(url=url, api_key=api_key or os.environ.get("QDRANT_API_KEY"))
        return QdrantClient(path=str(path / "qdrant"))

    @classmethod
    def create(cls, path: Path, dim: int, collection: str, url: str | None, api_key: str | None = None) -> QdrantStore:
        from qdrant_client import models

        client = cls.connect(path, url, api_key)
        if client.collection_exists(collection):
            raise StoreError(f"Qdrant collection {collection!r} already exists{' at ' + url if url else ''}; "
                             "use --add to append, or another retrieval.qdrant_collection")
        client.create_collection(collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
        return cls(path, client, collection, url)

    @classmethod
    def open(cls, path: Path, collection: str, url: str | None, api_key: str | None = None) -> QdrantStore:
        client = cls.connect(path, url, api_key)
        if not client.collection_exists(collection):
            raise StoreError(f"{path}: Qdrant collection {collection!r} not found{' at ' + url if url else ''}")
        return cls(path, client, collection, url)

    def __len__(self) -> int:
        return self.client.count(self.collection, exact=True).count

    def add(self, vectors: np.ndarray, passages: list[dict] | None = None, batch: int = 512) -> None:
        from qdrant_client import models

        start = len(self)
        for lo in range(0, len(vectors), batch):
            points = [models.PointStruct(id=start + i, vector=vectors[i].tolist(), payload=(passages[i] if passages else {}))
                      for i in range(lo, min(lo + batch, len(vectors)))]
            self.client.upsert(self.collection, points=points, wait=True)

    def search(self, queries: np.ndarray, n: int, nprobe: int = 16, ef_search: int = 64) -> tuple[np.ndarray, np.ndarray]:
        from qdrant_client import models

        scores = np.full((len(queries), n), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), n), -1, dtype=np.int64)
        params = models.SearchParams(hnsw_ef=max(ef_search, n)) if self.url else None  # local mode searches exhaustively
        for row, q in enumerate(queries):
            points = self.client.query_points(self.collection, query=q.tolist(), limit=n, search_params=params).points
            for col, p in enumerate(points):
                scores[row, col], ids[row, col] = p.score, int(p.id)
        return scores, ids

    def vectors(self, ids: list[int]) -> np.ndarray:
        got = {int(p.id): p.vector for p in self.client.retrieve(self.collection, ids=list(ids), with_vectors=True)}
        return np.asarray([got[i] for i in ids], dtype=np.float32).reshape(len(ids), -1)

    def save(self) -> None:
        pass  # Qdrant persists every upsert

    def describe(self) -> dict:
        return {"backend": "qdrant", "collection": self.collection, "url": self.url, "vectors": len(self)}

    def close(self) -> None:
        self.client.close()
