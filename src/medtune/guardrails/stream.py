"""Streaming post-checks: release a guarded answer sentence by sentence while the model writes it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from medtune.guardrails.doses import has_dose
from medtune.guardrails.replies import without_prefix

_SENTENCE_END = re.compile(r"(?<=[.!?:])\s|\n")


class GuardedStream:
    """Pieces of a guarded answer, released sentence by sentence.

    A complete sentence is shown as soon as the post-checks leave it unchanged. Once a sentence
    holds a dose figure, nothing more is shown until the model has finished: whether that
    sentence must go can depend on text that comes later (a prescription drug named afterwards),
    so the rest is released only from the final ``after`` result. Fixed replies come whole, and so does
    an answer to a question that shows intent to harm (``Decision.harm_intent``).
    """

    def __init__(self, after: Callable[[Any, str], Any], enabled: bool, decision, pieces: Iterable[str]):
        """``after``: the guardrails' post-checks (``Guardrails.after``); ``enabled``: whether they apply."""
        self.after, self.enabled, self.decision, self.pieces = after, enabled, decision, pieces
        self.result = None
        """The ``Guarded`` result, set once the iteration ends."""
        self.raw = ""
        """The model's own text, as generated."""

    def __iter__(self) -> Iterator[str]:
        decision, shown = self.decision, ""
        if decision.reply is not None or not self.enabled:
            for piece in ([] if decision.reply is not None else self.pieces):
                self.raw += piece
                shown += piece
                yield piece
            self.result = self.after(decision, decision.reply or self.raw)
            if self.result.answer.startswith(shown):
                yield self.result.answer[len(shown):]
            return
        held = decision.harm_intent  # the whole answer may be replaced: show nothing before it is checked
        for piece in self.pieces:
            self.raw += piece
            if held:
                continue
            if decision.prefix and decision.prefix.startswith(self.raw.strip()):
                continue  # the model may be writing the prefix itself: after() keeps one copy
            body = without_prefix(self.raw, decision.prefix)
            ends = [m.start() for m in _SENTENCE_END.finditer(body)]
            if not ends:
                continue
            complete = body[: ends[-1]].strip()
            if has_dose(complete):
                held = True
                continue
            text = f"{decision.prefix}\n\n{complete}" if decision.prefix else complete
            if text.startswith(shown) and len(text) > len(shown):
                yield text[len(shown):]
                shown = text
        self.result = self.after(decision, self.raw)
        final = self.result.answer
        if final.startswith(shown):
            yield final[len(shown):]
        else:  # whitespace normalised differently: start the answer over rather than show a wrong mix
            yield "\n\n" + final
