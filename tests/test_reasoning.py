"""A ``reasoning``-template run whose model really writes ``<think>…</think>``: ``ask`` (single and --input batch),
``serve`` (streamed and not), ``eval`` (answers.jsonl and the scored text) and chat carry no think text, and the
thinking is there when asked for (``ask --think``, ``include_reasoning``, the REPL's /think).

The run is real: the built-in model with a LoRA adapter overfitted (24 steps at a high learning rate) on ten
reasoning records that all think the same sentence, so greedy decoding writes that think section every time.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time

import pytest
from helpers import REPO
from rich.console import Console
from typer.testing import CliRunner

from medtune.apps.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()

FIXTURE = "tests/fixtures/reasoning_small.jsonl"
THOUGHT = "Answer briefly and simply."
"""The think section every training record has (after 'A general health question.')."""
QUESTIONS = ["What is asthma?", "Is coffee bad for you?"]
SETTINGS = ["--set", "generation.temperature=0", "--set", "generation.max_new_tokens=48"]


@pytest.fixture(scope="module")
def reasoning_run(tmp_path_factory):
    from medtune.core.rundir import RunDir
    from medtune.inference.loading import load_generator

    tmp = tmp_path_factory.mktemp("reasoning")
    config = tmp / "reasoning.yaml"
    config.write_text(f"""\
name: reasoning
output_dir: {tmp}
model: {{quantization: none}}
lora: {{r: 8, alpha: 16, dropout: 0}}
data:
  template: reasoning
  eval_fraction: 0.2
  near_dedupe: false
  sources: [{{kind: generic, path: {REPO / FIXTURE}, fields: {{reasoning: reasoning}}}}]
train: {{max_steps: 16, batch_size: 4, max_seq_length: 128, learning_rate: 3.0e-3, lr_scheduler: constant, logging_steps: 4, report_to: []}}
eval: {{max_new_tokens: 40, temperature: 0, base_precision: full, bootstrap_samples: 200}}
generation: {{temperature: 0, max_new_tokens: 48}}
""")
    result = runner.invoke(app, ["run", str(config)])  # prepare → train → eval, as a user runs it
    assert result.exit_code == 0, result.output
    run = RunDir(tmp / "reasoning")
    generator, cfg = load_generator(str(run.path), "none")
    return run, generator, cfg


def raw_generations(generator, cfg, questions, max_new_tokens=48):
    conversations = [[{"role": "user", "content": q}] for q in questions]
    return generator.generate(conversations, cfg.generation, max_new_tokens=max_new_tokens, temperature=0.0)


def test_the_tuned_model_really_thinks(reasoning_run):
    """Without this the other tests could pass on a model that never thinks."""
    _, generator, cfg = reasoning_run
    for text in raw_generations(generator, cfg, QUESTIONS):
        assert text.startswith("<think>") and "</think>" in text and THOUGHT in text, text


def test_eval_scores_the_answers_without_the_reasoning(reasoning_run):
    from medtune.evaluate.metrics import rouge_items
    from medtune.inference.think import split_think

    run, generator, cfg = reasoning_run
    rows = [json.loads(line) for line in (run.eval / "answers.jsonl").read_text().splitlines()]
    assert rows and {"id", "question", "reference", "base", "finetuned"} <= set(rows[0])
    # the same batch eval generated
    raw = raw_generations(generator, cfg, [r["question"] for r in rows], max_new_tokens=cfg.eval.max_new_tokens)
    for row, text in zip(rows, raw, strict=True):
        assert "<think>" in text and THOUGHT in text  # what the model wrote ...
        assert row["finetuned"] == split_think(text)[1] and row["finetuned"]  # ... and what eval kept: the answer alone
        assert "think>" not in row["finetuned"] + row["base"] and THOUGHT not in row["finetuned"]
    report = json.loads((run.eval / "report.json").read_text())
    scored = rouge_items([r["finetuned"] for r in rows], [r["reference"] for r in rows])
    assert report["results"]["finetuned"]["rouge1"] == pytest.approx(sum(s["rouge1"] for s in scored) / len(scored))  # the scored text
    # the report counts the answers that reasoned first: every tuned one, no base one
    assert report["results"]["finetuned"]["reasoning"] == 1.0 and report["results"]["base"]["reasoning"] == 0.0


def test_ask_single_and_batch(reasoning_run, tmp_path):
    run, _, _ = reasoning_run
    plain = runner.invoke(app, ["ask", QUESTIONS[0], "--model", str(run.path), *SETTINGS])
    assert plain.exit_code == 0, plain.output
    assert "think>" not in plain.output and THOUGHT not in plain.output and "This is general health information" in plain.output
    shown = runner.invoke(app, ["ask", QUESTIONS[0], "--model", str(run.path), "--think", *SETTINGS])
    assert shown.exit_code == 0 and THOUGHT in shown.output and "think>" not in shown.output

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "prompt": q}) + "\n" for i, q in enumerate(QUESTIONS)))
    for flags in ([], ["--think"]):
        result = runner.invoke(app, ["ask", "--model", str(run.path), "--input", str(src), "--output", str(out), *flags, *SETTINGS])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["id"] for r in rows] == ["q0", "q1"] and all(r["triage"] == "general" and r["answer"] for r in rows)
        assert all("think>" not in r["answer"] and THOUGHT not in r["answer"] for r in rows)
        if flags:
            assert all(THOUGHT in r["thinking"] and "think>" not in r["thinking"] for r in rows)
        else:
            assert all("thinking" not in r for r in rows)


def test_chat_keeps_the_thinking_off_the_answer_and_shows_it_on_request(reasoning_run, monkeypatch):
    from medtune.apps.repl import repl
    from medtune.inference.chat import ChatSession
    from medtune.inference.responder import Responder

    _, generator, cfg = reasoning_run
    session = ChatSession(Responder(generator, cfg, system_prompt=cfg.chat.system_prompt))
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{QUESTIONS[0]}\n/think\n{QUESTIONS[1]}\n"))
    out = io.StringIO()
    repl(session, Console(file=out, width=200, force_terminal=False, color_system=None))
    out = out.getvalue()
    hidden, shown = out.split("reasoning shown")
    assert "reasoning hidden: /think to show it" in hidden and THOUGHT not in hidden  # /think shows it, and the last answer's
    assert shown.count(THOUGHT) == 2 and "think>" not in out
    assert session.last.thinking.endswith(THOUGHT) and THOUGHT not in session.last.answer
    assert all("think>" not in m["content"] and THOUGHT not in m["content"] for m in session.history)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.extended
def test_serve_streamed_and_not(reasoning_run):
    import openai
    import uvicorn

    from medtune.apps.serve import create_app

    run, generator, cfg = reasoning_run
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(generator, cfg, "reasoning"), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300)
        ask = dict(model="reasoning", messages=[{"role": "user", "content": QUESTIONS[0]}], temperature=0, max_tokens=48)
        plain = client.chat.completions.create(**ask)
        message = plain.choices[0].message
        assert message.content and "think>" not in message.content and THOUGHT not in message.content
        assert getattr(message, "reasoning_content", None) is None
        chunks = list(client.chat.completions.create(**ask, stream=True))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == message.content and not any(getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices)

        asked = client.chat.completions.create(**ask, extra_body={"include_reasoning": True})
        assert asked.choices[0].message.content == message.content and asked.choices[0].message.reasoning_content.endswith(THOUGHT)
        chunks = list(client.chat.completions.create(**ask, stream=True, extra_body={"include_reasoning": True}))
        thinking = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
        assert thinking == asked.choices[0].message.reasoning_content
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == message.content
        assert chunks[-1].medtune["triage"] == "general" and chunks[-1].usage.completion_tokens > 10  # the thinking counts as completion
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
