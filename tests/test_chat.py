"""medtune.inference.chat: <think> splitting, the history budget, guarded streaming turns, the REPL (in-process and
as a real ``medtune chat`` subprocess), and a chat with a tuned run directory."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from helpers import REPO
from rich.console import Console

from medtune.apps.repl import repl
from medtune.core.config import ConfigError, load_config
from medtune.core.models import load_tokenizer
from medtune.guardrails import DOSE_NOTE, Guardrails
from medtune.inference.chat import ChatSession, ThinkSplitter, split_think
from medtune.inference.generate import Generator, load_generator

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


# --- sessions on a scripted model (real tokenizer, real guardrails) ------------------------------


class Scripted(Generator):
    """A generator whose 'model' writes scripted texts, in 4-character pieces (the tokenizer is real)."""

    def __init__(self, tokenizer, *outputs: str):
        super().__init__(None, tokenizer, "chat", "You are a careful medical assistant.")
        self.outputs = list(outputs)
        self.calls: list[dict] = []

    def stream(self, conversation, cfg, system_addendum=None, **overrides):
        self.calls.append({"conversation": conversation, "addendum": system_addendum, "overrides": overrides, "system": self.system_prompt})
        text = self.outputs.pop(0)
        yield from (text[i : i + 4] for i in range(0, len(text), 4))


@pytest.fixture(scope="module")
def tokenizer(base_model_dir):
    return load_tokenizer(str(base_model_dir))


@pytest.fixture(scope="module")
def guard():
    return Guardrails()


def session(tokenizer, guard, *outputs, overrides=()):
    cfg = load_config(None, list(overrides))
    return ChatSession(Scripted(tokenizer, *outputs), cfg, guard)


def test_turns_stream_through_guardrails_and_build_history(tokenizer, guard):
    s = session(tokenizer, guard, "Around 60 to 100 beats per minute. It is lower in athletes.", "Children have faster rates.")
    first = s.send("What is a normal resting heart rate?", temperature=0.0, max_new_tokens=20)
    pieces = list(first)
    assert first.done and first.triage == "general" and "disclaimer" in first.fired
    assert "".join(t for _, t in pieces) == first.answer and first.answer.endswith(guard.disclaimer)
    assert len(pieces) >= 2  # streamed: the first sentence before the rest
    assert s.generator.calls[0]["overrides"] == {"temperature": 0.0, "max_new_tokens": 20}
    list(s.send("And for children?"))
    sent = s.generator.calls[1]["conversation"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == "Around 60 to 100 beats per minute. It is lower in athletes."  # no disclaimer in the history
    assert s.history[-1]["content"] == "Children have faster rates."


def test_fixed_reply_never_calls_the_model_and_emergency_context_carries(tokenizer, guard):
    s = session(tokenizer, guard)
    reply = s.send(EMERGENCY)
    text = "".join(t for _, t in reply)
    assert reply.triage == "emergency" and text.startswith("Call 911") and s.generator.calls == []
    assert [m["role"] for m in s.history] == ["user", "assistant"]


def test_prescription_turn_gets_addendum_prefix_and_no_doses_even_in_thinking(tokenizer, guard):
    s = session(tokenizer, guard, "<think>Usual adult dose is 10 mg every 4 hours.</think>Oxycodone is an opioid. Take 10 mg every 4 hours.")
    reply = s.send("How much oxycodone should I take for my back pain?")
    out = list(reply)
    assert reply.triage == "prescription" and s.generator.calls[0]["addendum"]
    assert out[0] == ("think", reply.thinking) and "10 mg" not in reply.thinking and DOSE_NOTE in reply.thinking
    answer = "".join(t for k, t in out if k == "answer")
    assert answer == reply.answer and "10 mg" not in answer and answer.startswith("I can't prescribe")
    assert {"dose_removed", "dose_removed_think"} <= set(reply.fired)
    assert "<think>" not in s.history[-1]["content"] and "Usual adult dose" not in s.history[-1]["content"]


def test_history_budget_drops_oldest_pairs_and_keeps_system(tokenizer, guard):
    long = "Drinking water helps the kidneys. " * 12
    s = session(tokenizer, guard, long, long, long, "Short.", overrides=["chat.history_tokens=260", "chat.system_prompt=You are a terse persona."])
    for q in ("Tell me about water.", "And about tea?", "And about coffee?"):
        list(s.send(q))
    messages, dropped = s.window("And juice?")
    assert dropped >= 1 and messages[-1] == {"role": "user", "content": "And juice?"}
    assert messages[0]["content"] == s.history[2 * dropped]["content"]  # the oldest pairs went first
    assert s.count_tokens(messages) <= 260 < s.count_tokens(s.history + [messages[-1]])
    reply = s.send("And juice?")
    list(reply)
    assert reply.dropped_turns == dropped
    assert s.generator.calls[-1]["system"] == "You are a terse persona."
    assert "You are a terse persona." in s._render(messages, None)
    s.reset()
    assert s.history == [] and s.window("Hi there")[1] == 0


def test_a_question_over_budget_alone_is_still_sent(tokenizer, guard):
    s = session(tokenizer, guard, "Ok.", overrides=["chat.history_tokens=5"])
    messages, dropped = s.window("What is a normal resting heart rate?")
    assert messages == [{"role": "user", "content": "What is a normal resting heart rate?"}] and dropped == 0


# --- the REPL in-process -------------------------------------------------------------------------


def run_repl(monkeypatch, s, lines: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    out = io.StringIO()
    repl(s, Console(file=out, width=200, force_terminal=False, color_system=None))
    return out.getvalue()


def test_repl_commands(tokenizer, guard, monkeypatch):
    s = session(tokenizer, guard, "<think>Thirst is a late sign.</think>Drink when thirsty. Water is best.")
    out = run_repl(monkeypatch, s, "How much water should I drink a day?\n/think\n/frobnicate\n/reset\n/quit\nnever read\n")
    assert "Drink when thirsty." in out and DISCLAIMER_START in out
    assert "reasoning hidden: /think to show it" in out
    assert out.index("Thirst is a late sign.") > out.index("reasoning shown")  # shown only on request
    assert "unknown command /frobnicate" in out and "conversation cleared" in out
    assert s.history == [] and s.generator.outputs == []


def test_repl_shows_the_triage_label_and_ends_at_eof(tokenizer, guard, monkeypatch):
    s = session(tokenizer, guard)
    out = run_repl(monkeypatch, s, EMERGENCY + "\n")
    assert "[triage: emergency]" in out and "Call 911" in out and len(s.history) == 2


# --- the real model ------------------------------------------------------------------------------


def medtune(*args: str, stdin: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "medtune", *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.mark.slow
def test_medtune_chat_subprocess_with_the_builtin_model():
    """The real command on stdin: a benign question streamed by the model, /think, an emergency, /reset, EOF."""
    lines = ["What is a normal resting heart rate?", "/think", EMERGENCY, "/reset", "/help"]
    result = medtune("chat", "--quantization", "none", "--set", "generation.max_new_tokens=8", "--set", "generation.temperature=0", stdin="\n".join(lines) + "\n")
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
    s = ChatSession(generator, chat_cfg)
    first = s.send("What is a normal body temperature?")
    assert "".join(t for _, t in first) == first.answer and first.answer.endswith(s.guardrails.disclaimer)
    assert len(first.answer) > len(s.guardrails.disclaimer)
    second = s.send(EMERGENCY)
    assert "".join(t for _, t in second).startswith("Call 911") and second.triage == "emergency"
    assert len(s.history) == 4
