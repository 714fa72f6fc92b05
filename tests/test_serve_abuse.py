"""Hostile clients against a live `medtune serve` (the ``live_server`` fixture: a subprocess on loopback,
the tiny model, key required, body_timeout 1 s, max_tokens 16, 2 workers), over real HTTP and raw
sockets: every abuse is answered 4xx or handled, and afterwards ``/health`` shows every worker free."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

CHAT = "/v1/chat/completions"
EMERGENCY = "My father suddenly has crushing chest pain spreading to his left arm and he is sweating."


def post(server, body, **kw) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    headers = {**server.auth, "Content-Type": "application/json", **kw.pop("headers", {})}
    return httpx.post(server.url + CHAT, content=content, headers=headers, timeout=60, **kw)


def ask(content, **kw) -> dict:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 2, **kw}


def raw(server, head: str, body: bytes = b"") -> socket.socket:
    """A raw HTTP/1.1 request: the headers (plus ``body``) sent, the socket left open."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.key}\r\n"
                 f"Content-Type: application/json\r\n{head}\r\n".encode() + body)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (the refusals close it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


class OpenWatch:
    """inotify: did any process open or read a file under ``path`` (a directory) since ``start``?"""

    IN_ACCESS, IN_OPEN = 0x1, 0x20

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0 and self.libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_OPEN | self.IN_ACCESS) >= 0

    def events(self) -> int:
        try:
            return len(os.read(self.fd, 65536))
        except BlockingIOError:
            return 0


def test_model_naming_a_path_or_hub_id_loads_nothing(live_server, tiny_model_dir, tmp_path):
    other = shutil.copytree(tiny_model_dir, tmp_path / "another-model")  # a loadable model the server was not started with
    watch = OpenWatch(other)
    served = live_server.health()["model"]
    for name in (str(other), "HuggingFaceTB/SmolLM2-360M-Instruct", "smollm2-135m-instruct", "../" + served, f"{served}/../x"):
        start = time.perf_counter()
        r = post(live_server, ask("What is asthma?", model=name))
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", (name, r.text)
        assert time.perf_counter() - start < 10  # refused, not loaded (the tiny model alone takes seconds to load)
    assert watch.events() == 0  # the server never opened a file of the other model
    (other / "config.json").read_text()
    assert watch.events() > 0  # control: the watch does see an open
    assert post(live_server, ask("What is asthma?", model=served)).status_code == 200
    assert live_server.health()["model"] == served


def test_oversize_bodies_are_413_before_they_are_read(live_server):
    start = time.perf_counter()
    reply = read_all(raw(live_server, "Content-Length: 50000000\r\n", b'{"messages": ['))  # 50 MB announced, never sent
    assert reply.startswith(b"HTTP/1.1 413") and b"request_too_large" in reply and time.perf_counter() - start < 5
    chunk = b'{"role": "user", "content": "' + b"x" * 30000 + b'"},'
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in [b'{"messages": [', chunk, chunk, chunk])  # chunked: no length
    reply = read_all(raw(live_server, "Transfer-Encoding: chunked\r\n", body))
    assert reply.startswith(b"HTTP/1.1 413") and b"request_too_large" in reply
    r = post(live_server, {"messages": [{"role": "user", "content": "x" * 70_000}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_slow_loris_body_is_cut_off_and_holds_no_worker(live_server):
    body = json.dumps(ask("What is a fever?")).encode()
    stalled = raw(live_server, f"Content-Length: {len(body)}\r\n", body[:10])  # headers, a little body, then nothing
    trickle = raw(live_server, f"Content-Length: {len(body)}\r\n")
    start = time.perf_counter()
    health = live_server.health()
    assert health["workers_busy"] == 0 and health["pending"] == 0  # both connections wait, neither holds a worker
    assert post(live_server, ask("What is a fever?")).status_code == 200  # others are served meanwhile
    for byte in body[:5]:  # one byte every 0.3 s: the deadline is for the whole body, not per read
        try:
            trickle.send(bytes([byte]))
        except OSError:
            break
        time.sleep(0.3)
    for sock in (stalled, trickle):
        reply = read_all(sock)
        assert reply.startswith(b"HTTP/1.1 408") and b"request_timeout" in reply and b"connection: close" in reply.lower()
    assert time.perf_counter() - start < 8
    assert live_server.health()["pending"] == 0


def test_thousands_of_messages_and_huge_max_tokens_are_400(live_server):
    many = {"messages": [{"role": "user", "content": "hi"}] * 2000}
    r = post(live_server, many)
    assert r.status_code == 400 and "2000 messages" in r.json()["error"]["message"]
    r = post(live_server, {"messages": [{"role": "user", "content": "hi"}] * 10_000})
    assert r.status_code == 413
    for field, value in [("max_tokens", 10**12), ("max_completion_tokens", 2**70), ("max_tokens", 17)]:
        r = post(live_server, {**ask("hi"), field: value})
        assert r.status_code == 400 and field in r.json()["error"]["message"], (field, value, r.text)
    assert post(live_server, ask("hi", max_tokens=16)).status_code == 200  # the limit itself is allowed


UNICODE = [
    "\u202eeno si sihT what is asthma? \u202c",  # right-to-left override
    "what\u200b is\u200d an\u2060 ulcer\ufeff?",  # zero-width characters, a BOM mid-text
    "nul \u0000 byte \u0000 in text",
    "emoji \U0001f468\u200d\U0001f469\u200d\U0001f467 and combining e\u0301\u0301\u0301 and \U00010348",
    "مرحبا، ما هو الربو؟ שלום",  # Arabic and Hebrew (right to left)
]


def test_unicode_edge_cases_are_answered(live_server):
    turns = [{"role": "system", "content": UNICODE[0]}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(UNICODE[1:] + ["".join(UNICODE)])]
    body = {"messages": turns, "max_tokens": 4}
    r = post(live_server, body)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    with httpx.stream("POST", live_server.url + CHAT, json={**body, "stream": True}, headers=live_server.auth, timeout=60) as s:
        assert s.status_code == 200 and "data: [DONE]" in s.read().decode()


@pytest.mark.parametrize("body", [
    b'{"messages": [{"role": "user", "content": "hi \\ud800"}]}',  # a lone surrogate (valid JSON, not valid Unicode)
    b'{"model": "\\udfff", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"messages": [{"role": "user", "content": "\xff\xfe not utf-8"}]}',
    b'{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}',
    b'{"messages": [{"role": "user", "content": "hi"}], "seed": 100000000000000000000000}',
    b'{"messages": [{"role": "user", "content": "hi"}], "stream": 1}',
])
def test_malformed_input_is_400_not_500(live_server, body):
    r = post(live_server, body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text


def test_concurrent_streams_that_disconnect_leak_no_worker(live_server):
    before = live_server.health()
    statuses: list[int] = []

    def client(i: int) -> None:
        body = ask(EMERGENCY if i % 4 == 3 else f"List ten healthy foods ({i}).", stream=True, max_tokens=16, temperature=1.0)
        with httpx.stream("POST", live_server.url + CHAT, json=body, headers=live_server.auth, timeout=60) as s:
            statuses.append(s.status_code)
            next(s.iter_lines(), None)  # the first event at most, then hang up mid-stream

    def gone() -> None:  # the whole request sent, then gone before the answer starts
        body = json.dumps(ask("What is a cold?", stream=True)).encode()
        raw(live_server, f"Content-Length: {len(body)}\r\n", body).close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)] + [threading.Thread(target=gone) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(statuses) == 6 and set(statuses) <= {200, 429}, statuses
    health = live_server.wait_idle()
    assert health["workers_busy"] == 0 and health["waiting"] == 0 and health["workers_free"] == health["workers"]
    assert health["requests"] >= before["requests"] + 6


def test_api_key_compare(live_server):
    key = live_server.key
    same_length = key[:-1] + ("x" if key[-1] != "x" else "y")
    for given in (same_length, key[:-1], key + "0", key.upper(), "Bearer " + key):
        r = httpx.get(f"{live_server.url}/v1/models", headers={"Authorization": f"Bearer {given}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", given
    assert httpx.get(f"{live_server.url}/v1/models").status_code == 401
    assert httpx.get(f"{live_server.url}/v1/models", headers=live_server.auth).status_code == 200
    assert httpx.get(f"{live_server.url}/health").status_code == 200  # probes need no key


def test_after_the_abuse_every_worker_is_free_and_nothing_crashed(live_server):
    health = live_server.wait_idle()
    assert health["workers_busy"] == 0 and health["waiting"] == 0 and health["workers_free"] == health["workers"]
    log = live_server.log.read_text(errors="replace")
    assert "Traceback" not in log and " 500 " not in log, log[-3000:]


ARENA_PROBE = """
import ctypes, sys, threading
import torch
from medtune.apps.serve.limits import cap_malloc_arenas
print(cap_malloc_arenas(int(sys.argv[1])))
def work():  # torch allocates outside the GIL: concurrent mallocs, which is what makes glibc open arenas
    for _ in range(40):
        (torch.randn(300, 300) @ torch.randn(300, 300)).tolist()
threads = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in threads]
[t.join() for t in threads]
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
path = sys.argv[2]
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(f))
libc.fclose(ctypes.c_void_p(f))
print(open(path).read().count("<heap nr="))
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "malloc_info"), reason="glibc only")
def test_malloc_arena_cap_holds_under_threads(tmp_path):
    """serve.malloc_arenas: the soak's RSS growth came from per-thread arenas; capped, six allocating threads share one."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    runs = {n: subprocess.run([sys.executable, "-c", ARENA_PROBE, str(n), str(tmp_path / f"malloc_info_{n}.xml")],
                              capture_output=True, text=True, env=env, timeout=120)
            for n in (1, 0)}
    capped, default = (runs[n].stdout.split() for n in (1, 0))
    assert capped == ["True", "1"], runs[1].stderr
    assert default[0] == "False" and int(default[1]) > 1, default  # the control: glibc's default opens more
