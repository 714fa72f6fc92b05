"""Index scale: build rate, query latency (p50/p95) and memory of medtune's Index at 10k / 100k / 1M passages.

Synthetic corpus: passages of 60 words drawn from a Zipf-distributed 20k-word vocabulary, and, in
place of MiniLM embeddings, random unit vectors (384-d, as MiniLM's), so that 1M passages fit the
time here; the encoder's own rate is measured apart (``encode``: real MiniLM on 256 synthetic
passages), and a real build's time is about passages / that rate plus the index build. Each
(size, FAISS factory) runs in its own process: the dense store through ``FaissStore`` (``Flat``
exact, ``IVF`` = ``IVF<min(1024, n/39)>,Flat`` with nprobe 16, ``HNSW32`` with efSearch 64), BM25
through bm25s, then 200 queries (8 random words each) through ``Index.search_batch`` one at a time:
hybrid (encode the query with the real MiniLM, dense + BM25, fusion, exact scores), and dense / BM25
alone. RSS: the process's resident memory after building (passages held in memory as dicts, as
``Index.open`` does) and its peak.

Usage: python benchmarks/retrieval_scale.py [--sizes 10000,100000,1000000] [--factories Flat,IVF,HNSW32]
       [--skip 1000000:HNSW32] [--jobs 10000:Flat,1000000:IVF] [--queries 200] [--output artifacts/retrieval_scale.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384
WORDS = 60
VOCAB = 20_000
QUERIES = 200


def synthetic_texts(n: int, seed: int, words: int = WORDS) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(VOCAB)])
    ranks = np.minimum(rng.zipf(1.2, size=(n, words)) - 1, VOCAB - 1)
    return [" ".join(row) for row in vocab[ranks]]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(n: int, factory: str, n_queries: int = QUERIES) -> dict:
    """Build and query one index in this process."""
    import bm25s

    from medtune.core.config import RetrievalConfig
    from medtune.retrieval.index import Index, _stemmer
    from medtune.retrieval.stores import FaissStore

    if factory == "IVF":
        factory = f"IVF{min(1024, n // 39)},Flat"
    texts = synthetic_texts(n, seed=1)
    passages = [{"id": f"syn:{i}#0", "doc_id": f"syn:{i}", "text": t, "title": "", "url": None, "source": "syn", "license": "none"}
                for i, t in enumerate(texts)]
    del texts
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        store = FaissStore.create(path, DIM, factory)
        start = time.perf_counter()
        chunk = 100_000
        for lo in range(0, n, chunk):
            v = rng.standard_normal((min(chunk, n - lo), DIM), dtype=np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            store.add(v)
        dense_s = time.perf_counter() - start
        start = time.perf_counter()
        bm25 = bm25s.BM25()
        bm25.index(bm25s.tokenize([p["text"] for p in passages], stopwords="en", stemmer=_stemmer(), show_progress=False),
                   show_progress=False)
        bm25_s = time.perf_counter() - start
        index = Index(path, {"encoder": "builtin-minilm"}, passages, store, bm25)
        built_rss = rss_mb()
        cfg = RetrievalConfig()
        queries = [" ".join(q.split()[:8]) for q in synthetic_texts(n_queries, seed=3)]
        index.search_batch(queries[:2], 3, cfg)  # loads the encoder
        latency = {}
        for mode in ("hybrid", "dense", "bm25"):
            times = []
            for q in queries:
                t0 = time.perf_counter()
                index.search_batch([q], 3, cfg, mode)
                times.append((time.perf_counter() - t0) * 1000)
            latency[mode] = {"p50_ms": round(float(np.percentile(times, 50)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2)}
    return {"passages": n, "factory": factory, "dense_build_s": round(dense_s, 2), "dense_vectors_per_s": round(n / dense_s),
            "bm25_build_s": round(bm25_s, 2), "bm25_passages_per_s": round(n / bm25_s), "latency": latency,
            "rss_mb_built": round(built_rss), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def encode_rate(n: int = 256) -> dict:
    """MiniLM passages/s on realistic-length text (about 150 tokens each), the dominant cost of a real build."""
    from medtune.guardrails.semantic import load_encoder

    model = load_encoder("builtin-minilm").model
    texts = synthetic_texts(n, seed=4, words=110)
    model.encode(texts[:16], batch_size=64)
    start = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    seconds = time.perf_counter() - start
    return {"passages": n, "seconds": round(seconds, 2), "passages_per_s": round(n / seconds, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--factories", default="Flat,IVF,HNSW32")
    ap.add_argument("--skip", default="", help="size:factory pairs to leave out, comma-separated (e.g. 1000000:HNSW32)")
    ap.add_argument("--jobs", default=None, help="size:factory list run in this order instead of sizes × factories "
                                                  "(e.g. 10000:Flat,1000000:Flat); 0:encode is the encoder rate")
    ap.add_argument("--queries", type=int, default=QUERIES)
    ap.add_argument("--output", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, factory = args.child.split(":")
        print(json.dumps(encode_rate() if factory == "encode" else one(int(n), factory, args.queries)))
        return 0
    skip = set(filter(None, args.skip.split(",")))
    jobs = [("0", "encode")] + [(s, f) for s in args.sizes.split(",") for f in args.factories.split(",") if f"{s}:{f}" not in skip]
    if args.jobs:
        jobs = [tuple(j.split(":")) for j in args.jobs.split(",")]
    results = []
    print(f"{'passages':>9} {'factory':16} {'dense/s':>9} {'bm25/s':>8} {'hybrid p50/p95 ms':>18} {'dense p50/p95':>14} "
          f"{'bm25 p50/p95':>13} {'RSS MB':>7} {'peak':>6}", flush=True)
    for size, factory in jobs:
        out = subprocess.run([sys.executable, __file__, "--child", f"{size}:{factory}", "--queries", str(args.queries)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{size} {factory}: failed\n{out.stderr[-2000:]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        if factory == "encode":
            print(f"MiniLM encoding: {r['passages_per_s']} passages/s ({r['passages']} passages of ~150 tokens in {r['seconds']}s)",
                  flush=True)
            continue
        lat = r["latency"]
        h, d, b = lat["hybrid"], lat["dense"], lat["bm25"]
        print(f"{r['passages']:>9} {r['factory']:16} {r['dense_vectors_per_s']:>9} {r['bm25_passages_per_s']:>8} "
              f"{h['p50_ms']:>8.1f}/{h['p95_ms']:<8.1f} {d['p50_ms']:>6.1f}/{d['p95_ms']:<7.1f}"
              f"{b['p50_ms']:>6.1f}/{b['p95_ms']:<6.1f} {r['rss_mb_built']:>7} {r['peak_rss_mb']:>6}", flush=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
