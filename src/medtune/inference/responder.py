"""The one guarded answer path: ask, chat, the UI, the API, the safety suite and eval all answer here.

A question goes through these steps, in this order:

1. **guardrails before** (``Guardrails.before``): triage of the new turn, with the recent user
   turns as context. An emergency, crisis or harmful request gets its fixed reply and never
   reaches the model (nor takes a worker in the API).
2. **retrieval** (when ``retrieval.index`` is set, ``medtune.retrieval``): the top-k passages for
   the question join the system prompt, numbered, with the instruction to cite them as ``[1]``.
   When no passage reaches ``retrieval.threshold`` the answer says "I could not find this in the
   indexed sources" first (``not_found: ungrounded``: then the model's general answer, with no
   sources) or only that (``not_found: refuse``: the model is not called).
3. **the prompt**: the system prompt (persona + the caller's ``system`` text + the triage's
   addendum), the history (cut to a token budget when one is given, oldest pairs first, see
   ``window``) and the question, rendered with the model's template and counted in tokens.
4. **the model**: batched (``answer``, ``answer_batch``, ``complete``) or streamed (``stream``).
5. **the think split** (``think.py``): a reasoning model's ``<think>…</think>`` section is split
   off; answers never contain it. It is returned only when asked for (``think=True``), under the
   same dose filter as the answer.
6. **post-checks** (``Guardrails.after``, or ``Guardrails.stream`` sentence by sentence): dose
   filter, prefix, disclaimer. A grounded answer first loses citations to passages it was not given,
   and a citation whose passage does not hold its sentence moves to the passage that does (also while
   streaming: ``retrieval.cite.Citations``), then gets its citation statistics (``Answer.citations``) and, after the
   disclaimer, the "Sources" list (title and URL of each passage; ``Answer.sources``).

``prepare`` does steps 1-3 and gives a ``Turn`` (its ``prompt_tokens`` and ``fixed`` let the API
refuse an oversized prompt, and skip the worker queue for a fixed reply, before generating);
``complete``/``stream`` do the rest. ``Responder(generator, cfg, guardrails=False)`` skips steps 1
and 6's guardrails entirely (no triage, no encoder load) but still splits the think section: eval's
raw generations. ``retriever=False`` answers without retrieval whatever the config says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain

from medtune.core.config import GenerationConfig
from medtune.guardrails import Decision, Guardrails, remove_doses
from medtune.inference.generator import Generator
from medtune.inference.think import ThinkSplitter, opens_think, split_think
from medtune.retrieval import NOT_FOUND_UNGROUNDED, Grounding, Retriever
from medtune.retrieval.cite import Citations
from medtune.retrieval.retriever import NOT_FOUND


@dataclass
class Answer:
    """One answer, as shown, with what happened on the way."""

    answer: str = ""
    """The answer after the post-checks (disclaimer included); never any <think> text."""
    triage: str | None = "general"
    """The triage label; None when the guardrails are off."""
    fired: list[str] = field(default_factory=list)
    """Guardrail rules that changed or flagged anything ('triage:<label>', 'dose_removed', 'disclaimer', ...)."""
    thinking: str = ""
    """The model's <think> section (dose-filtered like the answer) when asked for; '' otherwise or when there was none."""
    raw: str = ""
    """The model's own text, as generated ('' for a fixed reply)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    """'length' when the answer used all of max_new_tokens, else 'stop'."""
    dropped_turns: int = 0
    """Earlier user/assistant pairs left out of the prompt to fit the history budget."""
    grounded: bool | None = None
    """True: answered from retrieved passages; False: retrieval found nothing above the threshold; None: no retrieval."""
    sources: list[dict] = field(default_factory=list)
    """The passages a grounded answer was given, ``[{id, title, url, score}]`` (numbered [1].. in that order)."""
    citations: dict = field(default_factory=dict)
    """Citation checks of a grounded answer: citations, removed, moved, cited_sentences, supported, unsupported, precision
    (and document_*, and model_* for the citations as the model wrote them, before any moved)."""
    body: str = ""
    """The answer without what retrieval adds around it (the not-found notice, the Sources list): what eval scores."""


@dataclass
class Turn:
    """A question prepared for the model (``Responder.prepare``): triaged, its prompt rendered and counted."""

    prompt: str
    history: list[dict]
    decision: Decision | None
    """The guardrails' decision; None when the guardrails are off."""
    generation: GenerationConfig
    think: bool = False
    """Return the <think> section on the answer."""
    system: str = ""
    """The whole system prompt the model gets ('' = none)."""
    messages: list[dict] = field(default_factory=list)
    """The conversation sent to the model (the kept history and the question)."""
    text: str = ""
    """The rendered prompt ('' for a fixed reply)."""
    prompt_tokens: int = 0
    dropped_turns: int = 0
    grounding: Grounding | None = None
    """What retrieval found (None: no retrieval, or a fixed triage reply)."""
    refused: bool = False
    """Nothing found and ``retrieval.not_found`` is 'refuse': the reply is the not-found sentence alone."""

    @property
    def fixed(self) -> bool:
        """A fixed reply: the model is not called."""
        return self.refused or (self.decision is not None and self.decision.reply is not None)

    @property
    def grounded(self) -> bool:
        return self.grounding is not None and self.grounding.found

    @property
    def triage(self) -> str | None:
        return None if self.decision is None else self.decision.triage.label


@dataclass
class Reply(Answer):
    """A streamed answer. Iterate it for ``("think" | "answer", text)`` pieces; the fields are final once it ends.

    ``close()`` stops the generation at its next token (and waits for it), also before the first piece.
    """

    prompt: str = ""
    done: bool = False
    on_done: Callable[[Reply], None] | None = field(default=None, repr=False)
    """Called with the reply once the stream has ended normally (chat: the turn joins the history)."""
    _pieces: Iterator[tuple[str, str]] = field(default_factory=lambda: iter(()), repr=False)
    _source: Iterator[str] | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self._pieces

    def close(self) -> None:
        """Stop reading: the generation stops at its next token. Call it from the reading thread, or once reading has stopped."""
        self._pieces.close()
        if self._source is not None:
            self._source.close()


class Responder:
    """Guardrails → [retrieval] → model → think split → post-checks, for one generator and run config.

    ``guardrails``: a shared ``Guardrails`` instance, ``None``/``True`` for one built from
    ``cfg.guardrails``, ``False`` for none at all. ``system_prompt``: the persona (``None``: the
    generator's own, i.e. ``data.system_prompt``); a call's ``system`` text is added to it.
    """

    def __init__(self, generator: Generator, cfg, guardrails: Guardrails | bool | None = None, system_prompt: str | None = None,
                 retriever: Retriever | bool | None = None):
        self.generator = generator
        self.cfg = cfg
        if guardrails is None or guardrails is True:
            guardrails = Guardrails(cfg.guardrails)
        self.guardrails: Guardrails | None = guardrails or None
        if retriever is None or retriever is True:
            retriever = Retriever(cfg.retrieval) if cfg.retrieval.index else None
        self.retriever: Retriever | None = retriever or None
        self.system_prompt = generator.system_prompt if system_prompt is None else system_prompt

    # the prompt ---------------------------------------------------------------------------------

    def system_text(self, system: str | None = None, addendum: str | None = None) -> str:
        """The whole system prompt: persona, the caller's system text, the triage's addendum ('' = none)."""
        return "\n\n".join(s for s in (self.system_prompt, system, addendum) if s)

    def render(self, messages: list[dict], full_system: str | None = None) -> str:
        """The generation prompt for ``messages`` (``full_system``: the whole system prompt; None = the persona alone)."""
        return self.generator.prompts([messages], self.system_text() if full_system is None else full_system)[0]

    def count_tokens(self, messages: list[dict], full_system: str | None = None) -> int:
        """Tokens of the generation prompt for these messages, as the model's template renders it."""
        return self.generator.count_tokens(self.render(messages, full_system))

    def window(self, prompt: str, history: Sequence[dict] = (), budget: int | None = None,
               full_system: str | None = None) -> tuple[list[dict], int]:
        """The messages sent to the model for a new question, and how many earlier pairs were left out.

        Whole user/assistant pairs are dropped from the oldest until the rendered prompt fits
        ``budget`` tokens (None: no budget, everything is kept); the system prompt and the question
        itself are always kept.
        """
        pairs = _pairs(history)
        dropped = 0
        while True:
            messages = [m for pair in pairs[dropped:] for m in pair] + [{"role": "user", "content": prompt}]
            if budget is None or dropped == len(pairs) or self.count_tokens(messages, full_system) <= budget:
                return messages, dropped
            dropped += 1

    def prepare(self, prompt: str, history: Sequence[dict] = (), system: str | None = None, *, think: bool = False,
                history_tokens: int | None = None, **gen_overrides) -> Turn:
        """Steps 1-3: triage, then (unless a fixed reply) the prompt rendered and counted.

        ``gen_overrides``: ``generation`` settings for this answer (``temperature``, ``max_new_tokens``,
        ``top_p``, ``seed``...; None values are ignored). ``history_tokens``: the token budget of the prompt.
        """
        history = list(history)
        decision = self.guardrails.before(prompt, history) if self.guardrails else None
        turn = Turn(prompt, history, decision, self._generation(gen_overrides), think)
        if turn.fixed:
            return turn
        addendum = decision.system_addendum if decision else None
        turn.system = self.system_text(system, addendum)
        if self.retriever is not None:  # after triage: a fixed reply never waits for retrieval
            turn.grounding = self.retriever.ground(prompt)
            if turn.grounding.found:
                turn.system = turn.grounding.system(self.system_prompt, system, addendum)
            elif self.retriever.cfg.not_found == "refuse":
                turn.refused = True
                return turn
        turn.messages, turn.dropped_turns = self.window(prompt, history, history_tokens, turn.system)
        turn.text = self.render(turn.messages, turn.system)
        turn.prompt_tokens = self.generator.count_tokens(turn.text)
        return turn

    def _generation(self, overrides: dict) -> GenerationConfig:
        unknown = set(overrides) - set(GenerationConfig.model_fields)
        if unknown:
            raise TypeError(f"unknown generation setting(s): {', '.join(sorted(unknown))}")
        return self.cfg.generation.model_copy(update={k: v for k, v in overrides.items() if v is not None})

    # whole answers -------------------------------------------------------------------------------

    def answer(self, prompt: str, history: Sequence[dict] = (), system: str | None = None, *, think: bool = False,
               **gen_overrides) -> Answer:
        """One guarded answer (no history budget: the API and ``ask`` send what they are given)."""
        return self.complete(self.prepare(prompt, history, system, think=think, **gen_overrides))

    def complete(self, turn: Turn) -> Answer:
        """Steps 4-6 for a prepared turn."""
        return self._complete([turn])[0]

    def answer_batch(self, prompts: Sequence[str], histories: Sequence[Sequence[dict]] | None = None, system: str | None = None, *,
                     think: bool = False, progress: bool = False, **gen_overrides) -> list[Answer]:
        """Answers in input order; the prompts that reach the model generate together (``generation.batch_size`` at a time)."""
        histories = [()] * len(prompts) if histories is None else histories
        turns = [self.prepare(p, h, system, think=think, **gen_overrides) for p, h in zip(prompts, histories, strict=True)]
        return self._complete(turns, progress)

    def _complete(self, turns: list[Turn], progress: bool = False) -> list[Answer]:
        to_model = [i for i, t in enumerate(turns) if not t.fixed]
        raw: dict[int, tuple[str, bool]] = {}
        if to_model:
            texts = self.generator.generate_stopped([turns[i].text for i in to_model], turns[to_model[0]].generation, progress=progress)
            raw = dict(zip(to_model, texts, strict=True))
        return [self._finish(turn, *raw.get(i, ("", None))) for i, turn in enumerate(turns)]

    def _finish(self, turn: Turn, raw: str, stopped: bool | None = None) -> Answer:
        thinking, answer = split_think(raw, opens_think(turn.text)) if raw else ("", "")
        out = Answer(raw=raw, prompt_tokens=turn.prompt_tokens, dropped_turns=turn.dropped_turns)
        cites = self.retriever.citations(turn.grounding) if turn.grounded else None
        if cites is not None:
            answer = cites.fix(answer)
        if turn.refused:
            out.answer, out.triage = NOT_FOUND, turn.triage
        elif turn.decision is None:
            out.answer, out.triage = answer, None
        else:
            guarded = self.guardrails.after(turn.decision, answer)
            out.answer, out.triage, out.fired = guarded.answer, guarded.triage, guarded.fired
        if turn.think:
            out.thinking = self._filter_think(thinking, turn, out.fired)
        out.body = out.answer
        self._ground(out, turn, cites)
        self._count(out, turn, stopped)
        return out

    def _ground(self, out: Answer, turn: Turn, cites: Citations | None) -> None:
        """Retrieval's part of a finished answer: citation checks and the Sources list, or the not-found notice."""
        if turn.grounding is None:
            return
        out.grounded = turn.grounding.found
        if turn.refused:
            out.fired.append("not_found")
        elif not turn.grounding.found:
            out.answer = f"{NOT_FOUND_UNGROUNDED}\n\n{out.answer}"
            out.fired.append("not_found")
        else:
            out.sources = turn.grounding.sources
            out.citations = self.retriever.check(out.body, turn.grounding, cites)
            out.answer = f"{out.answer}\n\n{turn.grounding.sources_text()}"
            if cites.removed:
                out.fired.append("citation_removed")
            if cites.moved:
                out.fired.append("citation_moved")

    # streamed answers ----------------------------------------------------------------------------

    def stream(self, turn: Turn | str, history: Sequence[dict] = (), system: str | None = None, **kwargs) -> Reply:
        """Steps 4-6 as the text arrives (a question is prepared first; ``kwargs`` as for ``prepare``).

        The think section, when asked for, comes first and whole (after its dose filter); the answer
        follows sentence by sentence as the post-checks release it (``Guardrails.stream``).
        """
        if not isinstance(turn, Turn):
            turn = self.prepare(turn, history, system, **kwargs)
        reply = Reply(prompt=turn.prompt, triage=turn.triage, prompt_tokens=turn.prompt_tokens, dropped_turns=turn.dropped_turns)
        if not turn.fixed:
            reply._source = self.generator.stream_from(turn.text, turn.generation)  # starts at the first piece read
        reply._pieces = self._stream(turn, reply)
        return reply

    def _stream(self, turn: Turn, reply: Reply) -> Iterator[tuple[str, str]]:
        raw: list[str] = []
        pieces: Iterable[str] = ()
        if reply._source is not None:
            split = iter(ThinkSplitter(_tap(reply._source, raw), thinking=opens_think(turn.text)))
            first, thinking = [], []
            for kind, text in split:  # the think section comes first: collect it, then show it whole, filtered
                if kind == "answer":
                    first.append(text)
                    break
                thinking.append(text)
            if turn.think:
                reply.thinking = self._filter_think("".join(thinking), turn, reply.fired)
                if reply.thinking:
                    yield "think", reply.thinking
            pieces = chain(first, (text for kind, text in split if kind == "answer"))
        cites = self.retriever.citations(turn.grounding) if turn.grounded else None
        pieces = cites.stream(pieces) if cites is not None else pieces
        if turn.grounding is not None and not turn.grounding.found:  # the notice comes first, as in the whole answer
            yield "answer", (NOT_FOUND if turn.refused else f"{NOT_FOUND_UNGROUNDED}\n\n")
        if turn.refused:
            reply.answer = NOT_FOUND
        elif turn.decision is None:
            shown = []
            for text in pieces:
                shown.append(text)
                yield "answer", text
            reply.answer = "".join(shown).strip()
        else:
            guarded = self.guardrails.stream(turn.decision, pieces)
            for text in guarded:
                if text:
                    yield "answer", text
            result = guarded.result
            reply.answer, reply.triage = result.answer, result.triage
            reply.fired = [*result.fired, *reply.fired]
        reply.raw = "".join(raw).strip()
        reply.body = reply.answer
        self._ground(reply, turn, cites)
        if turn.grounded:
            yield "answer", reply.answer[len(reply.body):]
        self._count(reply, turn)
        reply.done = True
        if reply.on_done is not None:
            reply.on_done(reply)

    # shared --------------------------------------------------------------------------------------

    def _filter_think(self, thinking: str, turn: Turn, fired: list[str]) -> str:
        """The think section under the same dose policy as the answer."""
        thinking = thinking.strip()
        config = self.guardrails.config if self.guardrails else None
        if thinking and turn.decision is not None and config.enabled and config.block_doses:
            thinking, removed = remove_doses(thinking, only_rx_drugs=turn.decision.triage.label != "prescription")
            if removed:
                fired.append("dose_removed_think")
        return thinking

    def _count(self, out: Answer, turn: Turn, stopped: bool | None = None) -> None:
        """Token count and finish reason: ``stopped`` is the generator's own word (EOS or not) where it has one;
        a streamed answer's reason is guessed from its token count."""
        out.completion_tokens = self.generator.count_tokens(out.raw)
        if stopped is None:
            stopped = out.completion_tokens < turn.generation.max_new_tokens
        out.finish_reason = "stop" if stopped else "length"


def _tap(pieces: Iterable[str], into: list[str]) -> Iterator[str]:
    """The pieces, unchanged, each also appended to ``into``."""
    for piece in pieces:
        into.append(piece)
        yield piece


def _pairs(history: Sequence[dict]) -> list[list[dict]]:
    """History grouped into turns that start with a user message (dropped together)."""
    pairs: list[list[dict]] = []
    for m in history:
        if m["role"] == "user" or not pairs:
            pairs.append([m])
        else:
            pairs[-1].append(m)
    return pairs
