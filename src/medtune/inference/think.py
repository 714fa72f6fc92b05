"""``<think>`` sections of reasoning models, split off the answer (whole texts and streams).

Reasoning models write ``<think>…</think>`` before their answer. ``ThinkSplitter`` turns a stream
of text pieces into ``("think", text)`` and ``("answer", text)`` pieces; ``split_think`` does the
same for a whole text. The answer never contains the section or its tags.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """Split a stream of text pieces into ``("think", text)`` and ``("answer", text)`` pieces.

    Tags may arrive cut across pieces, so a possible tag prefix at the end of the buffer is held
    back until the next piece decides it. ``thinking`` starts true when the prompt already opened
    the section (chat templates of some reasoning models end with ``<think>``); a ``</think>``
    with no opening tag also ends a section.
    """

    def __init__(self, pieces: Iterable[str], thinking: bool = False):
        self.pieces = pieces
        self.thinking = thinking
        self.think = ""
        self.answer = ""

    def __iter__(self) -> Iterator[tuple[str, str]]:
        buf = ""
        for piece in self.pieces:
            buf += piece
            while buf:
                tag = THINK_CLOSE if self.thinking else THINK_OPEN
                at = buf.find(tag)
                stray = -1 if self.thinking else buf.find(THINK_CLOSE)
                if stray != -1 and (at == -1 or stray < at):  # "</think>" without "<think>": what came before was thinking
                    self.think += self.answer + buf[:stray]
                    self.answer, buf = "", buf[stray + len(THINK_CLOSE):].lstrip()
                    continue
                if at != -1:
                    yield from self._emit(buf[:at])
                    buf = buf[at + len(tag):]
                    self.thinking = not self.thinking
                    if not self.thinking:
                        buf = buf.lstrip()
                    continue
                keep = _partial_tag(buf)
                yield from self._emit(buf[: len(buf) - keep])
                buf = buf[len(buf) - keep:]
                break
        yield from self._emit(buf)

    def _emit(self, text: str) -> Iterator[tuple[str, str]]:
        if not text:
            return
        if self.thinking:
            self.think += text
            yield "think", text
        else:
            if not self.answer:
                text = text.lstrip()
                if not text:
                    return
            self.answer += text
            yield "answer", text


def _partial_tag(buf: str) -> int:
    """Length of the longest suffix of ``buf`` that could start a think tag."""
    for n in range(min(len(buf), len(THINK_CLOSE)), 0, -1):
        tail = buf[-n:]
        if THINK_OPEN.startswith(tail) or THINK_CLOSE.startswith(tail):
            return n
    return 0


def split_think(text: str, thinking: bool = False) -> tuple[str, str]:
    """``(thinking, answer)`` of a whole generated text (``thinking``: the prompt opened the section)."""
    splitter = ThinkSplitter([text], thinking)
    for _ in splitter:
        pass
    return splitter.think.strip(), splitter.answer.strip()


def opens_think(prompt: str) -> bool:
    """Whether a rendered prompt already opened the think section (the model starts inside it)."""
    return prompt.rstrip().endswith(THINK_OPEN)
