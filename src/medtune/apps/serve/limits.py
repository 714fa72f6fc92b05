"""What keeps the API up under load and hostile clients: the worker slots and the gate in front of the app.

``Slots``: at most ``workers`` generations at once, ``queue_size`` more waiting; 429 beyond, 503
after ``queue_timeout``. ``Gate`` (ASGI middleware, outermost): checks the API key (constant-time),
refuses a body whose ``Content-Length`` is over the limit before reading it (413), then reads the
body itself, counting bytes (413) against a deadline (408), before FastAPI parses anything. A
client that sends headers and then trickles or stalls its body is cut off after
``serve.body_timeout`` seconds and never reaches a worker; refusals mid-body close the connection.
"""

from __future__ import annotations

import asyncio
import ctypes
import hmac
import logging
import os
import threading

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
"""glibc's mallopt parameter number for the arena cap (malloc.h)."""


def cap_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for this process (``serve.malloc_arenas``); True when applied.

    Must run before the worker threads start: arenas are created per thread on contention and keep
    what they freed. Nothing happens when ``arenas`` is 0, when ``MALLOC_ARENA_MAX`` is set (glibc read
    it at start-up) or on a C library without ``mallopt`` (musl, macOS)."""
    if arenas <= 0 or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(None)
        applied = bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
    if applied:
        log.info("malloc arenas capped at %d (serve.malloc_arenas)", arenas)
    return applied


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


def error_response(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    """The OpenAI error shape (``schema.ErrorResponse``)."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status_code=status, headers=headers)


class Slots:
    """At most ``workers`` generations at once, ``queue_size`` waiting; 429 beyond, 503 after ``timeout``."""

    def __init__(self, workers: int, queue_size: int, timeout: float):
        self.workers, self.queue_size, self.timeout = workers, queue_size, timeout
        self._sem = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self.pending = 0
        """Requests holding or waiting for a worker."""
        self.busy = 0
        """Requests holding a worker."""
        self.refused = 0

    def enter(self) -> None:
        """Take a place (or raise 429); then wait for a worker (or raise 503). Blocking: call in a thread."""
        with self._lock:
            if self.pending >= self.workers + self.queue_size:
                self.refused += 1
                raise APIError(429, f"server busy: {self.workers} generating and {self.queue_size} waiting; retry later",
                               "rate_limit_error", "queue_full")
            self.pending += 1
        if not self._sem.acquire(timeout=self.timeout):
            with self._lock:
                self.pending -= 1
            raise APIError(503, f"no worker became free within {self.timeout:g}s; retry later", "server_error", "queue_timeout")
        with self._lock:
            self.busy += 1

    def leave(self) -> None:
        with self._lock:
            self.busy -= 1
            self.pending -= 1
        self._sem.release()


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    pass


class Gate:
    """ASGI middleware: API key on ``/v1/*``, then the body read whole, bounded in bytes and in time."""

    CLOSE = {"Connection": "close"}

    def __init__(self, app, api_key: str | None, max_bytes: int, timeout: float):
        self.app, self.api_key, self.max_bytes, self.timeout = app, api_key, max_bytes, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if self.api_key and scope["path"].startswith("/v1/"):
            header = headers.get("authorization", "")
            given = header[7:] if header.lower().startswith("bearer ") else ""
            # header text is the raw bytes decoded as latin-1: encoding it back gives the bytes the client sent
            if not hmac.compare_digest(given.encode("latin-1"), self.api_key.encode()):
                return await error_response(401, "invalid or missing API key (send Authorization: Bearer <key>)",
                                            "authentication_error", "invalid_api_key")(scope, receive, send)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(413, f"request body is {int(length)} bytes; the limit is {self.max_bytes}", scope, receive, send)
        if not ((length.isdigit() and int(length) > 0) or "chunked" in headers.get("transfer-encoding", "").lower()):
            return await self.app(scope, receive, send)
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout)
        except _TooLarge:
            return await self._refuse(413, f"request body exceeds {self.max_bytes} bytes", scope, receive, send)
        except asyncio.TimeoutError:
            return await self._refuse(408, f"request body not received within {self.timeout:g}s", scope, receive, send,
                                      kind="invalid_request_error", code="request_timeout")
        except _Gone:
            return None
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, which a streaming response listens for

        return await self.app(scope, replay, send)

    async def _read(self, receive) -> bytes:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                raise _TooLarge
            if not message.get("more_body", False):
                return bytes(body)

    async def _refuse(self, status, message, scope, receive, send, kind="invalid_request_error", code="request_too_large"):
        """Answer and close the connection: the rest of the body is never read."""
        return await error_response(status, message, kind, code, headers=self.CLOSE)(scope, receive, send)
