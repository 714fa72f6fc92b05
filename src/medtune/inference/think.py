"""``<think>`` sections of reasoning models, split off the answer (whole texts and streams).

Reasoning models write ``<think>…</think>`` before their answer. ``ThinkSplitter`` turns a stream
of text pieces into ``("think", text)`` and ``("answer", text)`` pieces; ``split_think`` does the
same for a whole text. The answer never contains the section or its tags, nor a mangled closing tag
("</think-set>", or "</think" and a new line: written by a small tuned model).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_CLOSE_STEM = THINK_CLOSE[:-1]
_MANGLED = 12
_MANGLED_END = re.compile(rf"[^>\n<]{{0,{_MANGLED}}}>")


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
        pieces = iter(self.pieces)
        final = False
        while not final:
            piece = next(pieces, None)
            final = piece is None
            buf += piece or ""
            while buf:
                at, end = _close_tag(buf, final)
                if self.thinking:
                    nested = buf.find(THINK_OPEN)
                    if nested != -1 and (at is None or nested < at):  # a second '<think>' inside the section: not thinking
                        buf = buf[:nested] + buf[nested + len(THINK_OPEN):]
                        continue
                    if at is not None and end is None:  # '</think' whose end has not arrived yet
                        yield from self._emit(buf[:at])
                        buf = buf[at:]
                        break
                    tag_len = end - at if at is not None else 0
                else:
                    stray, stray_end = at, end
                    at, tag_len = buf.find(THINK_OPEN), len(THINK_OPEN)
                    at = None if at == -1 else at
                    if stray is not None and (at is None or stray < at):  # a closing tag without '<think>': what came before was thinking
                        if stray_end is None:
                            break
                        self.think += self.answer + buf[:stray]
                        self.answer, buf = "", buf[stray_end:].lstrip()
                        continue
                if at is not None:
                    yield from self._emit(buf[:at])
                    buf = buf[at + tag_len:]
                    self.thinking = not self.thinking
                    if not self.thinking:
                        buf = buf.lstrip()
                    continue
                keep = 0 if final else _partial_tag(buf)
                yield from self._emit(buf[: len(buf) - keep])
                buf = buf[len(buf) - keep:]
                break

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


def _close_tag(buf: str, final: bool) -> tuple[int | None, int | None]:
    """Where the closing tag in ``buf`` starts and ends: ``(None, None)`` when there is none, ``(at, None)`` when
    its end has not arrived yet. A small model sometimes mangles it ("</think-set>", "</think" and a new line):
    '</think' ends at the first '>' within ``_MANGLED`` characters on its line, else right after '</think'."""
    at = buf.find(_CLOSE_STEM)
    if at == -1:
        return None, None
    rest = buf[at + len(_CLOSE_STEM):]
    match = _MANGLED_END.match(rest)
    if match:
        return at, at + len(_CLOSE_STEM) + match.end()
    if final or len(rest) > _MANGLED or "\n" in rest or "<" in rest:
        return at, at + len(_CLOSE_STEM)
    return at, None


def split_think(text: str, thinking: bool = False) -> tuple[str, str]:
    """``(thinking, answer)`` of a whole generated text (``thinking``: the prompt opened the section)."""
    splitter = ThinkSplitter([text], thinking)
    for _ in splitter:
        pass
    return splitter.think.strip(), splitter.answer.strip()


def opens_think(prompt: str) -> bool:
    """Whether a rendered prompt already opened the think section (the model starts inside it)."""
    return prompt.rstrip().endswith(THINK_OPEN)
