"""An OpenAI-compatible HTTP API over the guarded answer path (FastAPI + uvicorn).

    POST /v1/chat/completions   multi-turn messages; "stream": true answers with server-sent events
    GET  /v1/models             the one model this server holds
    GET  /health                status, queue length, generations run so far, streams cancelled by their client

Every request goes through ``Responder`` (``inference/responder.py``): the latest user turn is
triaged with the earlier turns as context; an emergency, crisis or harmful request gets its fixed
reply without reaching the model (and without waiting for a worker); other answers are
post-checked (streamed answers sentence by sentence, so what is shown is what the guardrails
allow). A reasoning model's ``<think>`` section never reaches ``content``; a request with
``"include_reasoning": true`` gets it as ``reasoning_content`` (of the message, or of stream
deltas). The triage label comes back in an extra ``medtune`` field of the response (and of the last
streamed chunk). With an index (``retrieval.index``, ``--index``) a response also carries ``sources``
(``[{id, title, url, score}]``) and the answer text ends with the same list, for plain OpenAI clients.
Responses are ``openai.types.chat`` models; the stream is framed by ``sse-starlette``.

On a CPU the model is the bottleneck, so generation runs ``serve.workers`` at a time; up to
``serve.queue_size`` more requests wait (at most ``serve.queue_timeout`` seconds, then 503) and
anything beyond that is refused at once with 429. Bodies over ``serve.max_request_bytes`` get
413; prompts over ``serve.max_prompt_tokens`` (counted before a worker is taken) and
``max_tokens`` over ``serve.max_tokens`` get 400. The server binds 127.0.0.1 unless told
otherwise; ``serve.api_key`` (or the ``MEDTUNE_API_KEY`` environment variable) requires
``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medtune.core.config import RunConfig, ServeConfig
from medtune.inference.responder import Answer, Responder

log = logging.getLogger(__name__)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    stream: bool = False
    n: int = 1
    seed: int | None = None
    include_reasoning: bool = False
    """Return a reasoning model's <think> section as ``reasoning_content`` (never part of ``content``)."""


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


class Slots:
    """At most ``workers`` generations at once, ``queue_size`` waiting; 429 beyond, 503 after ``timeout``."""

    def __init__(self, workers: int, queue_size: int, timeout: float):
        self.workers, self.queue_size, self.timeout = workers, queue_size, timeout
        self._sem = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self.pending = 0
        """Requests holding or waiting for a worker."""
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

    def leave(self) -> None:
        self._sem.release()
        with self._lock:
            self.pending -= 1


def create_app(generator, cfg: RunConfig, model_name: str, serve_cfg: ServeConfig | None = None):
    """The FastAPI app around a loaded ``Generator`` and its run config."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from openai.types import Model
    from openai.types.shared import ErrorObject
    from sse_starlette import EventSourceResponse
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool

    sc = serve_cfg or cfg.serve
    api_key = sc.api_key or os.environ.get("MEDTUNE_API_KEY") or None
    responder = Responder(generator, cfg)
    slots = Slots(sc.workers, sc.queue_size, sc.queue_timeout)
    stats = {"generations": 0, "requests": 0, "streams_cancelled": 0, "started": time.time()}
    app = FastAPI(title="medtune", version="1")
    app.state.slots, app.state.stats, app.state.guardrails, app.state.responder = slots, stats, responder.guardrails, responder

    def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        body = ErrorObject(message=message, type=kind, code=code, param=None).model_dump(exclude_unset=True)
        return JSONResponse({"error": body}, status_code=status)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return error(e.status, e.message, e.kind, e.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return error(400, f"{where}: {first['msg']}" if where else first["msg"], code="invalid_request")

    @app.middleware("http")
    async def _limits_and_auth(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1/"):
            header = request.headers.get("authorization", "")
            given = header[7:] if header.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return error(401, "invalid or missing API key (send Authorization: Bearer <key>)",
                             "authentication_error", "invalid_api_key")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > sc.max_request_bytes:
            return error(413, f"request body is {int(length)} bytes; the limit is {sc.max_request_bytes}", code="request_too_large")
        if request.method == "POST" and not length:  # chunked upload: count while reading
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > sc.max_request_bytes:
                    return error(413, f"request body exceeds {sc.max_request_bytes} bytes", code="request_too_large")
            request._body = body
        return await call_next(request)

    @app.get("/health")
    def health():
        return {"status": "ok", "model": model_name, "workers": sc.workers, "pending": slots.pending, "queue_size": sc.queue_size, **stats}

    @app.get("/v1/models")
    def models():
        model = Model(id=model_name, object="model", created=int(stats["started"]), owned_by="medtune")
        return {"object": "list", "data": [model.model_dump(exclude_unset=True)]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        stats["requests"] += 1
        if req.n != 1:
            raise APIError(400, "n: only n=1 is supported")
        if len(req.messages) > sc.max_messages:
            raise APIError(400, f"messages: {len(req.messages)} messages; the limit is {sc.max_messages}")
        max_tokens = req.max_completion_tokens or req.max_tokens
        if max_tokens and max_tokens > sc.max_tokens:
            raise APIError(400, f"max_tokens: {max_tokens} is more than this server allows ({sc.max_tokens})")
        max_tokens = max_tokens or min(cfg.generation.max_new_tokens, sc.max_tokens)
        system = "\n\n".join(m.text() for m in req.messages if m.role in ("system", "developer") and m.text()) or None
        turns = [{"role": m.role, "content": m.text()} for m in req.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1]["role"] != "user":
            raise APIError(400, "messages: the last message must be the user's")
        prepare = partial(responder.prepare, turns[-1]["content"], turns[:-1], system, think=req.include_reasoning,
                          max_new_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed)
        turn = await run_in_threadpool(prepare)  # triage (the encoder) and tokenizing: keep them off the event loop
        if turn.prompt_tokens > sc.max_prompt_tokens:
            raise APIError(400, f"messages: the prompt is {turn.prompt_tokens} tokens; the limit is {sc.max_prompt_tokens} "
                           "(shorten the conversation)", code="context_length_exceeded")
        wire = _Wire(f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), req.model or model_name)

        if not req.stream:
            if turn.fixed:  # a fixed reply holds no worker
                answer = responder.complete(turn)
            else:
                await run_in_threadpool(slots.enter)
                try:
                    stats["generations"] += 1
                    answer = await run_in_threadpool(responder.complete, turn)
                finally:
                    slots.leave()
            return wire.completion(answer).model_dump(exclude_unset=True)

        if not turn.fixed:
            await run_in_threadpool(slots.enter)  # 429/503 come back as a status, before the stream starts
            stats["generations"] += 1
        reply = responder.stream(turn)
        state = {"released": turn.fixed, "done": False}

        def release() -> None:
            """Once per request: stop the generation at its next token if it still runs, then free the worker."""
            if not state["released"]:
                state["released"] = True
                reply.close()
                slots.leave()
                stats["streams_cancelled"] += not state["done"]

        def events() -> Iterator[str]:
            try:
                yield wire.chunk({"role": "assistant", "content": ""}).model_dump_json(exclude_unset=True)
                for kind, text in reply:
                    delta = {"reasoning_content": text} if kind == "think" else {"content": text}
                    yield wire.chunk(delta).model_dump_json(exclude_unset=True)
                yield wire.chunk({}, reply).model_dump_json(exclude_unset=True)
                yield "[DONE]"
                state["done"] = True
            finally:
                release()

        body = events()

        def after_response() -> None:
            """Run once the response ends, also when the client went away mid-stream (or before the
            first chunk, when ``events`` never started and its ``finally`` cannot run)."""
            body.close()
            release()

        return EventSourceResponse(body, headers={"Cache-Control": "no-cache"}, background=BackgroundTask(after_response))

    return app


class _Wire:
    """OpenAI wire objects (``openai.types.chat``) for one response, with the extra ``medtune`` field."""

    def __init__(self, rid: str, created: int, model: str):
        self.head = {"id": rid, "created": created, "model": model}

    @staticmethod
    def _extras(answer: Answer) -> dict:
        from openai.types import CompletionUsage

        usage = CompletionUsage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                                total_tokens=answer.prompt_tokens + answer.completion_tokens)
        extras = {"usage": usage, "medtune": {"triage": answer.triage, "fired": answer.fired}}
        if answer.grounded is not None:  # retrieval on: the passages behind the answer (also listed in its text)
            extras["sources"] = answer.sources
            extras["medtune"].update(grounded=answer.grounded, citations=answer.citations)
        return extras

    def completion(self, answer: Answer):
        from openai.types.chat import ChatCompletion, ChatCompletionMessage
        from openai.types.chat.chat_completion import Choice

        reasoning = {"reasoning_content": answer.thinking} if answer.thinking else {}
        message = ChatCompletionMessage(role="assistant", content=answer.answer, **reasoning)
        choice = Choice(index=0, message=message, finish_reason=answer.finish_reason)
        return ChatCompletion(**self.head, object="chat.completion", choices=[choice], **self._extras(answer))

    def chunk(self, delta: dict, final: Answer | None = None):
        """A stream chunk; the last one (``final``) carries the finish reason, usage and the ``medtune`` field."""
        from openai.types.chat import ChatCompletionChunk
        from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta

        choice = Choice(index=0, delta=ChoiceDelta(**delta), finish_reason=final.finish_reason if final else None)
        return ChatCompletionChunk(**self.head, object="chat.completion.chunk", choices=[choice], **(self._extras(final) if final else {}))


def load(model: str, cfg: RunConfig | None = None):
    """(generator, run config, served model name) for a run directory, an exported merged dir or a base model."""
    from pathlib import Path

    from medtune.core.rundir import RunDir
    from medtune.inference.loading import load_generator

    serve_cfg = (cfg or RunConfig()).serve
    quantization = None if serve_cfg.quantization == "as_trained" else serve_cfg.quantization
    generator, run_cfg = load_generator(model, quantization=quantization, cfg=cfg)  # explicit settings win over the run's own
    name = run_cfg.name if RunDir(model).is_run() else Path(model).name or model
    return generator, run_cfg, name


def serve(model: str, cfg: RunConfig | None = None, host: str | None = None, port: int | None = None) -> None:
    """Load the model and run uvicorn until interrupted."""
    import uvicorn

    generator, run_cfg, name = load(model, cfg)
    sc = run_cfg.serve.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    if sc.host not in ("127.0.0.1", "localhost", "::1") and not (sc.api_key or os.environ.get("MEDTUNE_API_KEY")):
        log.warning("binding %s without an API key: anyone who can reach this port can use the model", sc.host)
    app = create_app(generator, run_cfg, name, sc)
    uvicorn.run(app, host=sc.host, port=sc.port, log_level="info", timeout_keep_alive=5)
