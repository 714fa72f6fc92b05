"""medtune.inference.chat and think: <think> splitting, the history budget, guarded streaming turns, the REPL (in-process
and as a real ``medtune chat`` subprocess), and a chat with a tuned run directory. Sessions run on the real built-in
model; one test scripts the model's text (see ``Scripted``)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from helpers import REPO
from rich.console import Console

from medtune.apps.repl import repl
from medtune.core.config import ConfigError, load_config
from medtune.guardrails import DOSE_NOTE, PRESCRIPTION_ADDENDUM, Guardrails
from medtune.inference.chat import ChatSession
from medtune.inference.generator import Generator
from medtune.inference.loading import load_generator
from medtune.inference.responder import Responder
from medtune.inference.think import ThinkSplitter, split_think

DISCLAIMER_START = "This is general health information"
EMERGENCY = "my dad's face is drooping and his speech is slurred"


# --- <think> -------------------------------------------------------------------------------------


def split(pieces, thinking=False):
    s = ThinkSplitter(pieces, thinking)
    out = list(s)
    return s, out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_think_split_whatever_the_piece_boundaries(size):
    text = "<think>\nThe user asks about fever. Keep it general.\n</think>\n\nA fever is a temperature above 38 C."
    s, out = split([text[i : i + size] for i in range(0, len(text), size)])
    assert s.think.strip() == "The user asks about fever. Keep it general."
    assert s.answer == "A fever is a temperature above 38 C."
    assert "".join(t for k, t in out if k == "answer") == s.answer
    assert all("<" not in t for _, t in out)


def test_think_split_without_tags_and_with_a_lone_closing_tag():
    assert split_think("Just an answer with a < sign and <b>bold</b>.") == ("", "Just an answer with a < sign and <b>bold</b>.")
    assert split_think("reasoning that the template opened</think>The answer.") == ("reasoning that the template opened", "The answer.")
    s, _ = split(["still thinking", " here</thi", "nk> answer"], thinking=True)
    assert (s.think, s.answer) == ("still thinking here", "answer")


@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_mangled_closing_tag_still_ends_the_thinking(size):
    """Read in a tuned 135M model's answers: '</think-set>', '</think' then a new line; never shown as the answer."""
    for closing in ("</think-set>", "</think\n", "</think-like> ", "</think"):
        text = f"<think>\nThe abstract says so.\n{closing}\nyes"
        s, out = split([text[i : i + size] for i in range(0, len(text), size)])
        assert (s.think.strip(), s.answer) == ("The abstract says so.", "yes"), closing
        assert "".join(t for k, t in out if k == "answer") == "yes"
    # a '<' after '</think' is the next tag, not the end of this one
    assert split_think("<think>a</think<b>bold</b>") == ("a", "<b>bold</b>")
    # what the tuned model also wrote: an empty section opened twice, closed, then a mangled close: no thinking at all
    for size in (1, 4, 100):
        text = "<think>\n\n<think>\n\n\n</think>\n</think\n\nyes"
        s, _ = split([text[i : i + size] for i in range(0, len(text), size)])
        assert (s.think.strip(), s.answer) == ("", "yes"), size


def test_unfinished_think_is_never_an_answer():
    s, out = split(["<think>I ran out of tokens while"])
    assert s.answer == "" and s.think == "I ran out of tokens while" and all(k == "think" for k, _ in out)


# --- config --------------------------------------------------------------------------------------


def test_chat_config_section():
    cfg = load_config(None, ["chat.history_tokens=300", "chat.show_think=true", "chat.system_prompt=You are terse."])
    assert (cfg.chat.history_tokens, cfg.chat.show_think, cfg.chat.system_prompt) == (300, True, "You are terse.")
    assert load_config(None).chat.show_think is False
    with pytest.raises(ConfigError, match="chat.history_tokens"):
        load_config(None, ["chat.history_tokens=0"])
    with pytest.raises(ConfigError, match="chat.budget: unknown key"):
        load_config(None, ["chat.budget=3"])


# --- sessions on the real built-in model (real tokenizer, real guardrails) ------------------------


@pytest.fixture(scope="module")
def generator(builtin_generator):
    return builtin_generator


@pytest.fixture(scope="module")
def guard():
    return Guardrails()


def session(generator, guard, overrides=(), history=None) -> ChatSession:
    cfg = load_config(None, ["generation.temperature=0", "generation.max_new_tokens=8", *overrides])
    return ChatSession(Responder(generator, cfg, guard, system_prompt=cfg.chat.system_prompt), history)


@contextmanager
def model_calls(model):
    """The ``input_ids`` of every forward pass of ``model`` while the block runs (the first one of a generation is its prompt)."""
    seen: list = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs.get("input_ids")), with_kwargs=True)
    try:
        yield seen
    finally:
        hook.remove()


def prompt_of(generator, seen) -> str:
    return generator.tokenizer.decode(seen[0][0])


def test_turns_stream_through_guardrails_and_build_history(generator, guard):
    s = session(generator, guard)
    with model_calls(generator.model) as seen:
        first = s.send("What is a normal resting heart rate?", temperature=0.0, max_new_tokens=40)
        pieces = list(first)
    assert first.done and first.triage == "general" and "disclaimer" in first.fired
    assert "".join(t for _, t in pieces) == first.answer and first.answer.endswith(guard.disclaimer)
    assert len(pieces) >= 2  # streamed: the model's sentences, then the disclaimer
    assert 8 < len(seen) <= 40  # this turn's max_new_tokens (40, the config says 8) reached the model: one forward pass a token
    shown = first.answer[: -len(guard.disclaimer)].strip()
    with model_calls(generator.model) as seen:
        list(s.send("And for children?"))
    sent = prompt_of(generator, seen)
    assert "What is a normal resting heart rate?" in sent and shown in sent and guard.disclaimer not in sent  # no disclaimer in the history
    assert [m["role"] for m in s.history] == ["user", "assistant", "user", "assistant"] and s.history[1]["content"] == shown


def test_fixed_reply_never_calls_the_model_and_emergency_context_carries(generator, guard):
    s = session(generator, guard)
    with model_calls(generator.model) as seen:
        reply = s.send(EMERGENCY)
        text = "".join(t for _, t in reply)
        follow_up = s.send("What should I do while waiting?")
        list(follow_up)
    assert reply.triage == "emergency" and text.startswith("Call 911") and seen == []
    assert follow_up.triage == "emergency" and follow_up.answer.startswith("Call 911")  # the earlier turn is context
    assert [m["role"] for m in s.history] == ["user", "assistant"] * 2


@dataclass(frozen=True)
class Scripted(Generator):
    """A generator whose 'model' writes a scripted text in 4-character pieces (the tokenizer is real).

    Kept because no real model can be relied on to write dose figures inside a <think> section on
    cue, and that is what the dose filter of the think section needs to be shown on.
    """

    outputs: list = field(default_factory=list)
    seen: list = field(default_factory=list)

    def stream_from(self, text, cfg, max_new_tokens=None, temperature=None):
        self.seen.append(text)
        out = self.outputs.pop(0)
        yield from (out[i : i + 4] for i in range(0, len(out), 4))


def test_prescription_turn_gets_addendum_prefix_and_no_doses_even_in_thinking(generator, guard):
    text = "<think>Usual adult dose is 10 mg every 4 hours.</think>Oxycodone is an opioid. Take 10 mg every 4 hours."
    scripted = Scripted(None, generator.tokenizer, "chat", "You are a careful medical assistant.", outputs=[text])
    s = ChatSession(Responder(scripted, load_config(None), guard))
    reply = s.send("How much oxycodone should I take for my back pain?")
    out = list(reply)
    assert reply.triage == "prescription" and PRESCRIPTION_ADDENDUM in scripted.seen[0]
    assert out[0] == ("think", reply.thinking) and "10 mg" not in reply.thinking and DOSE_NOTE in reply.thinking
    answer = "".join(t for k, t in out if k == "answer")
    assert answer == reply.answer and "10 mg" not in answer and answer.startswith("I can't prescribe")
    assert {"dose_removed", "dose_removed_think"} <= set(reply.fired)
    assert "<think>" not in s.history[-1]["content"] and "Usual adult dose" not in s.history[-1]["content"]


def test_history_budget_drops_oldest_pairs_and_keeps_system(generator, guard):
    long = "Drinking water helps the kidneys. " * 12
    history = []
    for q in ("Tell me about water.", "And about tea?", "And about coffee?"):
        history += [{"role": "user", "content": q}, {"role": "assistant", "content": long}]
    s = session(generator, guard, ["chat.history_tokens=260", "chat.system_prompt=You are a terse persona."], history)
    r = s.responder
    messages, dropped = r.window("And juice?", s.history, 260)
    assert dropped >= 1 and messages[-1] == {"role": "user", "content": "And juice?"}
    assert messages[0]["content"] == s.history[2 * dropped]["content"]  # the oldest pairs went first
    assert r.count_tokens(messages) <= 260 < r.count_tokens(s.history + [messages[-1]])
    with model_calls(generator.model) as seen:
        reply = s.send("And juice?")
        list(reply)
    assert reply.dropped_turns == dropped
    sent = prompt_of(generator, seen)
    assert "You are a terse persona." in sent and "Tell me about water." not in sent and "And juice?" in sent
    assert "You are a terse persona." in r.render(messages)
    s.reset()
    assert s.history == [] and r.window("Hi there", s.history, 260)[1] == 0


def test_a_question_over_budget_alone_is_still_sent(generator, guard):
    r = session(generator, guard).responder
    messages, dropped = r.window("What is a normal resting heart rate?", [], budget=5)
    assert messages == [{"role": "user", "content": "What is a normal resting heart rate?"}] and dropped == 0


# --- the REPL in-process -------------------------------------------------------------------------


def run_repl(monkeypatch, s, lines: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    out = io.StringIO()
    repl(s, Console(file=out, width=200, force_terminal=False, color_system=None))
    return out.getvalue()


def test_repl_commands(generator, guard, monkeypatch):
    s = session(generator, guard)
    out = run_repl(monkeypatch, s, "How much water should I drink a day?\n/think\n/frobnicate\n/reset\n/quit\nnever read\n")
    answer = out[out.index("medtune>") : out.index("reasoning shown")]
    assert DISCLAIMER_START in answer and len(answer.split(DISCLAIMER_START)[0].strip()) > len("medtune>")  # the model said something
    assert "the last answer had no <think> section" in out  # the built-in model does not reason (test_reasoning.py: one that does)
    assert "unknown command /frobnicate" in out and "conversation cleared" in out
    assert s.history == [] and out.count("medtune>") == 1  # nothing read after /quit


def test_repl_shows_the_triage_label_and_ends_at_eof(generator, guard, monkeypatch):
    s = session(generator, guard)
    out = run_repl(monkeypatch, s, EMERGENCY + "\n")
    assert "[triage: emergency]" in out and "Call 911" in out and len(s.history) == 2


# --- the real model ------------------------------------------------------------------------------


def medtune(*args: str, stdin: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "medtune", *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)


@pytest.mark.slow
@pytest.mark.extended
def test_medtune_chat_subprocess_with_the_builtin_model():
    """The real command on stdin: a benign question streamed by the model, /think, an emergency, /reset, EOF."""
    lines = ["What is a normal resting heart rate?", "/think", EMERGENCY, "/reset", "/help"]
    result = medtune("chat", "--quantization", "none", "--set", "generation.max_new_tokens=8", "--set", "generation.temperature=0",
                     stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    benign = out[out.index("medtune>") : out.index("reasoning shown")]
    assert DISCLAIMER_START in benign and len(benign.split(DISCLAIMER_START)[0].strip()) > len("medtune>")  # the model said something
    assert "no <think> section" in out
    assert "[triage: emergency]" in out and "Call 911 now" in out
    assert "conversation cleared" in out and "/quit" in out


@pytest.mark.slow
def test_chat_with_a_tuned_run(trained_run):
    """A run directory: its base with the adapter, its own system prompt, a two-turn streamed chat."""
    cfg, run, _, _ = trained_run
    explicit = load_config(None, ["generation.max_new_tokens=6", "generation.temperature=0", "chat.history_tokens=512"])
    generator, chat_cfg = load_generator(str(run.path), "none", cfg=explicit)
    assert type(generator.model).__name__.startswith("Peft")
    assert generator.system_prompt == cfg.data.system_prompt and chat_cfg.chat.history_tokens == 512
    s = ChatSession(Responder(generator, chat_cfg, system_prompt=chat_cfg.chat.system_prompt))
    first = s.send("What is a normal body temperature?")
    assert "".join(t for _, t in first) == first.answer and first.answer.endswith(s.guardrails.disclaimer)
    assert len(first.answer) > len(s.guardrails.disclaimer)
    second = s.send(EMERGENCY)
    assert "".join(t for _, t in second).startswith("Call 911") and second.triage == "emergency"
    assert len(s.history) == 4
