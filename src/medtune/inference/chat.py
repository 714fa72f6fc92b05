"""Multi-turn chat through the guardrails: the session behind ``medtune chat``, the UI and the API.

A ``ChatSession`` keeps the conversation and answers one user turn at a time::

    session = ChatSession(generator, cfg)
    reply = session.send("What is a normal resting heart rate?")
    for kind, text in reply:          # ("think", ...) and ("answer", ...) pieces as they arrive
        print(text, end="")
    reply.answer, reply.triage, reply.thinking

Each turn goes ``Guardrails.before`` (triage of the new turn, with the recent user turns as
context) → the model, streamed (``Generator.stream``, skipped for fixed replies) → ``Guardrails.stream``
(sentences released as the post-checks pass; ends exactly as ``Guardrails.after``).

History and its budget: the prompt the model sees is the persona system prompt, the kept history
and the new question, rendered with the model's own chat template (``Generator.prompts``) and
counted in tokens. When it is over ``chat.history_tokens`` the oldest user/assistant pairs are
left out first; the system prompt and the new question are always kept. The assistant turns kept
in the history are the answers as shown (after the guardrails), without the disclaimer, so a
removed dose never goes back into the model's context.

Reasoning models write ``<think>…</think>`` before their answer. ``ThinkSplitter`` splits that
section off the stream: it never reaches the guardrails' answer or the history. It is kept on the
reply (``reply.thinking``, under the same dose filter as the answer) and yielded once, whole, as a
``"think"`` piece before the answer; the REPL and the UI show it only on request
(``chat.show_think``, ``/think``, the UI's checkbox).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain

from medtune.guardrails import Guardrails, remove_doses

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


# --- <think> sections ----------------------------------------------------------------------------


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


def split_think(text: str) -> tuple[str, str]:
    """``(thinking, answer)`` of a whole generated text."""
    splitter = ThinkSplitter([text])
    for _ in splitter:
        pass
    return splitter.think.strip(), splitter.answer.strip()


# --- the session ---------------------------------------------------------------------------------


@dataclass
class Reply:
    """One answer of a session. Iterate it for ``(kind, text)`` pieces; the fields are final once it ends."""

    prompt: str
    stream: Iterable[tuple[str, str]] = ()
    answer: str = ""
    """The answer as shown, after the guardrails (disclaimer included)."""
    triage: str = "general"
    fired: list[str] = field(default_factory=list)
    thinking: str = ""
    """The model's <think> section (dose-filtered like the answer), '' when there was none."""
    dropped_turns: int = 0
    """Earlier user/assistant pairs left out of the prompt to fit chat.history_tokens."""
    done: bool = False

    def __iter__(self) -> Iterator[tuple[str, str]]:
        yield from self.stream


class ChatSession:
    """A conversation with one model, through the guardrails, within a token budget."""

    def __init__(self, generator, cfg, guardrails: Guardrails | None = None, history: list[dict] | None = None):
        self.generator = generator
        self.cfg = cfg
        self.guardrails = guardrails or Guardrails(cfg.guardrails)
        self.history: list[dict] = list(history or [])
        """User/assistant messages so far (assistant turns as shown, without the disclaimer)."""
        self.show_think = cfg.chat.show_think
        self.last: Reply | None = None

    @property
    def system_prompt(self) -> str | None:
        return self.cfg.chat.system_prompt or self.generator.system_prompt

    def reset(self) -> None:
        self.history.clear()
        self.last = None

    # the prompt ---------------------------------------------------------------------------------

    def count_tokens(self, messages: list[dict], system_addendum: str | None = None) -> int:
        """Tokens of the generation prompt for these messages, as the model's template renders it."""
        text = self._render(messages, system_addendum)
        return len(self.generator.tokenizer(text, add_special_tokens=False)["input_ids"])

    def window(self, prompt: str, system_addendum: str | None = None) -> tuple[list[dict], int]:
        """The messages sent to the model for a new question, and how many earlier pairs were left out.

        Whole user/assistant pairs are dropped from the oldest until the rendered prompt fits
        ``chat.history_tokens``; the system prompt and the question itself are always kept.
        """
        pairs = _pairs(self.history)
        budget = self.cfg.chat.history_tokens
        dropped = 0
        while True:
            messages = [m for pair in pairs[dropped:] for m in pair] + [{"role": "user", "content": prompt}]
            if dropped == len(pairs) or self.count_tokens(messages, system_addendum) <= budget:
                return messages, dropped
            dropped += 1

    def _render(self, messages: list[dict], system_addendum: str | None) -> str:
        gen = self.generator
        saved, gen.system_prompt = gen.system_prompt, self.system_prompt
        try:
            return gen.prompts([messages], [system_addendum])[0]
        finally:
            gen.system_prompt = saved

    # a turn ---------------------------------------------------------------------------------------

    def send(self, prompt: str, **overrides) -> Reply:
        """Answer a user turn; iterate the returned ``Reply`` to stream it (the turn joins the history at the end).

        ``overrides``: ``temperature`` and ``max_new_tokens`` for this answer.
        """
        prompt = prompt.strip()
        if not prompt:
            raise ValueError("empty message")
        reply = Reply(prompt)
        reply.stream = self._turn(reply, overrides)
        self.last = reply
        return reply

    def _turn(self, reply: Reply, overrides: dict) -> Iterator[tuple[str, str]]:
        guard = self.guardrails
        decision = guard.before(reply.prompt, self.history)
        reply.triage = decision.triage.label
        pieces: Iterable[str] = ()
        if decision.reply is None:
            messages, reply.dropped_turns = self.window(reply.prompt, decision.system_addendum)
            opened = self._render(messages, decision.system_addendum).rstrip().endswith(THINK_OPEN)
            split = iter(ThinkSplitter(self._generate(messages, decision.system_addendum, overrides), thinking=opened))
            first: list[str] = []
            thinking = []
            for kind, text in split:  # the think section comes first: collect it, then show it whole, filtered
                if kind == "answer":
                    first.append(text)
                    break
                thinking.append(text)
            reply.thinking = self._filter_think("".join(thinking), decision.triage.label, reply)
            if reply.thinking:
                yield "think", reply.thinking
            pieces = chain(first, (text for kind, text in split if kind == "answer"))
        guarded = guard.stream(decision, pieces)
        for text in guarded:
            if text:
                yield "answer", text
        result = guarded.result
        reply.answer, reply.triage = result.answer, result.triage
        reply.fired = [*result.fired, *reply.fired]
        self.history += [{"role": "user", "content": reply.prompt}, {"role": "assistant", "content": self._for_history(result.answer)}]
        reply.done = True

    def _filter_think(self, thinking: str, label: str, reply: Reply) -> str:
        """The think section under the same dose policy as the answer."""
        thinking = thinking.strip()
        config = self.guardrails.config
        if thinking and config.enabled and config.block_doses:
            thinking, removed = remove_doses(thinking, only_rx_drugs=label != "prescription")
            if removed:
                reply.fired.append("dose_removed_think")
        return thinking

    def _generate(self, messages: list[dict], addendum: str | None, overrides: dict) -> Iterator[str]:
        gen = self.generator
        saved, gen.system_prompt = gen.system_prompt, self.system_prompt
        try:
            yield from gen.stream(messages, self.cfg.generation, addendum, **overrides)
        finally:
            gen.system_prompt = saved

    def _for_history(self, answer: str) -> str:
        disclaimer = self.guardrails.disclaimer
        if disclaimer and answer.endswith(disclaimer):
            answer = answer[: -len(disclaimer)]
        return answer.strip()


def _pairs(history: list[dict]) -> list[list[dict]]:
    """History grouped into turns that start with a user message (dropped together)."""
    pairs: list[list[dict]] = []
    for m in history:
        if m["role"] == "user" or not pairs:
            pairs.append([m])
        else:
            pairs[-1].append(m)
    return pairs
