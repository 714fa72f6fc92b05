"""The FastAPI app: routes, error handlers and the OpenAI wire objects; ``load`` and ``serve`` to run it."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from functools import partial

from medtune.apps.serve.limits import APIError, Gate, Slots, cap_malloc_arenas, error_response
from medtune.apps.serve.schema import CHAT_RESPONSES, HEALTH_RESPONSES, MODELS_RESPONSES, ChatRequest, Health, finish_openapi
from medtune.core.config import RunConfig, ServeConfig
from medtune.inference.responder import Answer, Responder

log = logging.getLogger(__name__)

_UNION_TAGS = {"body", "str", "int", "float", "bool", "list", "dict", "none"}
"""Parts of a pydantic error location that name the request's wrapper or a union's branch, not a field."""


def create_app(generator, cfg: RunConfig, model_name: str, serve_cfg: ServeConfig | None = None):
    """The FastAPI app around a loaded ``Generator`` and its run config."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from openai.types import Model
    from sse_starlette import EventSourceResponse
    from starlette.background import BackgroundTask
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    sc = serve_cfg or cfg.serve
    api_key = sc.api_key or os.environ.get("MEDTUNE_API_KEY") or None
    responder = Responder(generator, cfg)
    slots = Slots(sc.workers, sc.queue_size, sc.queue_timeout)
    stats = {"generations": 0, "requests": 0, "streams_cancelled": 0, "started": time.time()}
    app = FastAPI(title="medtune", version="1", description="An OpenAI-compatible chat API with medtune's guardrails.")
    app.state.slots, app.state.stats, app.state.guardrails, app.state.responder = slots, stats, responder.guardrails, responder
    app.add_middleware(Gate, api_key=api_key, max_bytes=sc.max_request_bytes, timeout=sc.body_timeout)

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = finish_openapi(FastAPI.openapi(app), bool(api_key), model_name, sc.max_tokens, sc.max_messages)
        return app.openapi_schema

    app.openapi = openapi

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return error_response(e.status, e.message, e.kind, e.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if isinstance(p, int) or (p.isidentifier() and p not in _UNION_TAGS))
        return error_response(400, f"{where}: {first['msg']}" if where else first["msg"], code="invalid_request")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):  # 404 unknown path, 405 wrong method: the same error shape
        return error_response(e.status_code, str(e.detail), code="not_found" if e.status_code == 404 else None, headers=e.headers)

    @app.get("/health", response_model=Health, responses=HEALTH_RESPONSES)
    def health():
        busy, pending = slots.busy, slots.pending
        return Health(status="ok", model=model_name, workers=sc.workers, workers_busy=busy, workers_free=sc.workers - busy,
                      waiting=pending - busy, pending=pending, queue_size=sc.queue_size, **stats)

    @app.get("/v1/models", responses=MODELS_RESPONSES)
    def models():
        model = Model(id=model_name, object="model", created=int(stats["started"]), owned_by="medtune")
        return {"object": "list", "data": [model.model_dump(exclude_unset=True)]}

    @app.post("/v1/chat/completions", response_model=None, responses=CHAT_RESPONSES)
    async def chat(req: ChatRequest):
        stats["requests"] += 1
        if req.model and req.model != model_name:  # never a path or a Hub id to load: this server holds one model
            raise APIError(404, f"model: this server serves '{model_name}' only (GET /v1/models)", code="model_not_found")
        if len(req.messages) > sc.max_messages:
            raise APIError(400, f"messages: {len(req.messages)} messages; the limit is {sc.max_messages}")
        for field in ("max_tokens", "max_completion_tokens"):
            if (asked := getattr(req, field)) and asked > sc.max_tokens:
                raise APIError(400, f"{field}: {asked} is more than this server allows ({sc.max_tokens})")
        max_tokens = req.max_completion_tokens or req.max_tokens
        max_tokens = max_tokens or min(cfg.generation.max_new_tokens, sc.max_tokens)
        system = "\n\n".join(m.text() for m in req.messages if m.role in ("system", "developer") and m.text()) or None
        turns = [{"role": m.role, "content": m.text()} for m in req.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1]["role"] != "user":
            raise APIError(400, "messages: the last message must be the user's", code="last_message_not_user")
        prepare = partial(responder.prepare, turns[-1]["content"], turns[:-1], system, think=req.include_reasoning,
                          max_new_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed)
        turn = await run_in_threadpool(prepare)  # triage (the encoder) and tokenizing: keep them off the event loop
        if turn.prompt_tokens > sc.max_prompt_tokens:
            raise APIError(400, f"messages: the prompt is {turn.prompt_tokens} tokens; the limit is {sc.max_prompt_tokens} "
                           "(shorten the conversation)", code="context_length_exceeded")
        wire = _Wire(f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), model_name)

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

    cap_malloc_arenas((cfg or RunConfig()).serve.malloc_arenas)  # before any thread allocates
    generator, run_cfg, name = load(model, cfg)
    sc = run_cfg.serve.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    if sc.host not in ("127.0.0.1", "localhost", "::1") and not (sc.api_key or os.environ.get("MEDTUNE_API_KEY")):
        log.warning("binding %s without an API key: anyone who can reach this port can use the model", sc.host)
    app = create_app(generator, run_cfg, name, sc)
    if app.state.guardrails:  # load the triage encoder now: the port opens ready, and the first client does not wait for it
        app.state.guardrails.triage("warm up")
    uvicorn.run(app, host=sc.host, port=sc.port, log_level="info", timeout_keep_alive=5)
