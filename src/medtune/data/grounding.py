"""The grounded prompt: numbered passages in the system prompt, answers that cite them as ``[1]``.

One wording for training (the ``rag`` template, ``data.templates``) and for answering (``retrieval``
through ``inference.responder``), so a model tuned with passages in its prompt sees the same layout
when it answers with retrieved ones. A passage is a dict with at least ``text`` and ``title``
(``url`` optional).
"""

from __future__ import annotations

from collections.abc import Sequence

NOT_FOUND = "I could not find this in the indexed sources."
"""What a grounded answer says when no passage answers the question (also the rag template's target then)."""
INSTRUCTIONS = (
    "Answer the question using only the numbered sources below. After each sentence that uses a source, "
    "cite it with its number in square brackets, like [1]. If the sources do not answer the question, say: "
    f"\"{NOT_FOUND}\""
)


def passages_block(passages: Sequence[dict]) -> str:
    """``Sources:`` then ``[n] title`` and the passage text, one block per passage."""
    blocks = [f"[{i}] {p.get('title') or 'untitled'}\n{p['text'].strip()}" for i, p in enumerate(passages, start=1)]
    return "Sources:\n\n" + "\n\n".join(blocks)


def grounded_system(passages: Sequence[dict], *before: str | None) -> str:
    """The system prompt of a grounded turn: ``before`` (persona, caller's text, triage addendum), the instructions, the passages."""
    return "\n\n".join(s for s in (*before, INSTRUCTIONS, passages_block(passages)) if s)


def sources_list(passages: Sequence[dict]) -> str:
    """The list shown after a grounded answer: ``Sources:`` and ``[n] title — url`` per document
    (passages of one document share a line: ``[1, 3] title — url``)."""
    return "Sources:\n" + "\n".join(f"[{', '.join(map(str, numbers))}] {title}" + (f" — {url}" if url else "")
                                    for (title, url), numbers in by_document(passages).items())


def by_document(passages: Sequence[dict]) -> dict[tuple[str, str | None], list[int]]:
    """``(title, url) -> [passage numbers]`` in order of first appearance."""
    out: dict[tuple[str, str | None], list[int]] = {}
    for i, p in enumerate(passages, start=1):
        out.setdefault((p.get("title") or "untitled", p.get("url")), []).append(i)
    return out
