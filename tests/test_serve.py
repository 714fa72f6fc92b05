"""The OpenAI-compatible API, driven by the official `openai` client against a live loopback server."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

KEY = "test-key-123"
EMERGENCY = "My father suddenly has crushing chest pain spreading to his left arm and he is sweating."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_run):
    from medtune.apps.serve import create_app, load

    cfg, run, _, _ = trained_run
    cfg = cfg.model_copy(deep=True)
    cfg.generation.max_new_tokens = 8
    cfg.serve.api_key = KEY
    cfg.serve.max_request_bytes = 4000
    cfg.serve.max_tokens = 256
    generator, run_cfg, name = load(str(run.path), cfg)
    app = create_app(generator, run_cfg, name)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=120)
    yield app, client, port, name
    srv.should_exit = True
    thread.join(timeout=10)


def test_models_and_health(server):
    import httpx

    app, client, port, name = server
    assert [m.id for m in client.models.list().data] == [name]
    health = httpx.get(f"http://127.0.0.1:{port}/health").json()
    assert health["status"] == "ok" and health["model"] == name


def test_chat_non_streaming_and_streaming_agree(server):
    app, client, _, name = server
    messages = [{"role": "user", "content": "What are common symptoms of the flu?"}]
    resp = client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=8)
    answer = resp.choices[0].message.content
    assert resp.object == "chat.completion" and answer
    assert resp.medtune["triage"] == "general"
    assert app.state.guardrails.disclaimer in answer  # post-checks ran
    assert resp.usage.completion_tokens > 0 and resp.choices[0].finish_reason in ("stop", "length")

    chunks = list(client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=8, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer  # same greedy answer, same guardrails, whether streamed or not
    assert chunks[-1].medtune["triage"] == "general" and chunks[-1].choices[0].finish_reason


def test_multi_turn_client_system_message(server):
    app, client, _, name = server
    resp = client.chat.completions.create(
        model=name,
        temperature=0,
        max_tokens=4,
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is a migraine?"},
            {"role": "assistant", "content": "A migraine is a type of headache."},
            {"role": "user", "content": "How long does one last?"},
        ],
    )
    assert resp.choices[0].message.content and resp.medtune["triage"] == "general"


def test_emergency_gets_fixed_reply_without_the_model(server):
    app, client, _, name = server
    before = app.state.stats["generations"]
    resp = client.chat.completions.create(model=name, messages=[{"role": "user", "content": EMERGENCY}])
    assert resp.medtune["triage"] == "emergency"
    assert app.state.guardrails.config.resources.emergency in resp.choices[0].message.content
    chunks = list(client.chat.completions.create(model=name, messages=[{"role": "user", "content": EMERGENCY}], stream=True))
    assert chunks[-1].medtune["triage"] == "emergency"
    assert app.state.stats["generations"] == before  # neither request reached the model


def test_emergency_in_history_carries_over(server):
    app, client, _, name = server
    resp = client.chat.completions.create(
        model=name,
        messages=[{"role": "user", "content": EMERGENCY}, {"role": "assistant", "content": "Call now."},
                  {"role": "user", "content": "What should I do while waiting?"}],
    )
    assert resp.medtune["triage"] == "emergency"


@pytest.mark.extended
def test_client_gone_mid_stream_stops_its_generation(server):
    import httpx

    _, client, port, name = server
    messages = [{"role": "user", "content": "List thirty healthy foods, one per line, with a short note on each."}]
    whole = client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=200)
    assert whole.usage.completion_tokens >= 100, "the answer must be long for the check to mean anything"
    headers = {"Authorization": f"Bearer {KEY}"}
    base = f"http://127.0.0.1:{port}"
    before = httpx.get(f"{base}/health").json()
    body = {"model": name, "messages": messages, "temperature": 0, "max_tokens": 200, "stream": True}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
        for line in r.iter_lines():
            if '"content":"' in line.replace(" ", "") and '"content":""' not in line.replace(" ", ""):
                break  # one piece of text, then the client hangs up
    deadline = time.time() + 60
    while (health := httpx.get(f"{base}/health").json())["streams_cancelled"] == before["streams_cancelled"] and time.time() < deadline:
        time.sleep(0.1)
    assert health["streams_cancelled"] == before["streams_cancelled"] + 1 and health["pending"] == 0
    assert not [t for t in threading.enumerate() if t.name == "medtune-generate" and t.is_alive()]  # stopped, not left running


def test_bad_key_is_401(server):
    _, client, port, name = server
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_limits_are_4xx_with_a_message(server):
    _, client, _, name = server
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "why? " * 2000}])
    assert e.value.status_code == 413 and "limit" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=10_000)
    assert "max_tokens" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=name, messages=[{"role": "assistant", "content": "hi"}])
    assert "last message" in e.value.message


def test_full_queue_answers_429_but_fixed_replies_pass(server):
    app, client, _, name = server
    slots = app.state.slots
    queue_size, slots.queue_size = slots.queue_size, 0
    slots.enter()  # this test holds the only worker; no waiting places
    try:
        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "What is anaemia?"}], max_tokens=4)
        assert "busy" in e.value.message
        resp = client.chat.completions.create(model=name, messages=[{"role": "user", "content": EMERGENCY}])
        assert resp.medtune["triage"] == "emergency"  # a fixed reply needs no worker
    finally:
        slots.leave()
        slots.queue_size = queue_size
    assert slots.pending == 0


def test_slots_timeout_is_503_and_overflow_429():
    from medtune.apps.serve import APIError, Slots

    slots = Slots(workers=1, queue_size=1, timeout=0.05)
    slots.enter()
    with pytest.raises(APIError) as e:  # a queue place, but the worker never frees up
        slots.enter()
    assert e.value.status == 503 and slots.pending == 1
    slots.queue_size = 0
    with pytest.raises(APIError) as e:
        slots.enter()
    assert e.value.status == 429
    slots.leave()
    assert slots.pending == 0
