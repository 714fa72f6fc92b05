"""Retrieval over trusted sources: passages, indexes (dense + BM25, fused), search, citation checks.

Sits below the answer path (inference) and above the data adapters it reads from:

* ``passages``: documents from MedQuAD XML, PubMedQA, any JSONL/CSV/Parquet with a field mapping, or
  .txt/.md folders, split into token-bounded passages with overlap;
* ``index``: ``Index.build``/``open``/``add``/``search`` (dense vectors + BM25, reciprocal-rank fusion)
  and its manifest; ``stores``: FAISS (default) or Qdrant for the dense vectors;
* ``retriever``: what the answer path uses (``Retriever.ground`` before the model, ``check`` after);
* ``cite``: citation checks on the answer.
"""

from medtune.retrieval.index import Hit, Index, rrf
from medtune.retrieval.retriever import NOT_FOUND_UNGROUNDED, Grounding, Retriever, open_index

__all__ = ["NOT_FOUND_UNGROUNDED", "Grounding", "Hit", "Index", "Retriever", "open_index", "rrf"]
