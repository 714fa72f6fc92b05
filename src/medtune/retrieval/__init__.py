"""Retrieval over trusted sources: passages, indexes (dense + BM25, fused), search. Sits below the answer path
(inference) and above the data adapters it reads from."""
