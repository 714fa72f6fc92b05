"""What the API accepts and answers, as pydantic models: the request (validated before anything runs),
the response and error bodies, and every status code each operation can answer, for the OpenAPI
schema (``/openapi.json``) that clients and ``schemathesis`` read.

Every string in a request must be encodable as UTF-8: JSON lets a client send a lone surrogate
(``"\\ud800"``), which no tokenizer and no JSON response can carry, so it is refused with 400 here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"invalid Unicode at character {e.start}: a lone surrogate (not encodable as UTF-8)") from None
    return text


def _whole(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


Text = Annotated[str, AfterValidator(_utf8)]
def Integer(**bounds):  # noqa: N802  (a type)
    """An integer as JSON Schema counts them (5 or 5.0, not 5.5, "5" or true), within ``bounds``."""
    return Annotated[int, Field(**bounds), BeforeValidator(_whole)]


STRICT = ConfigDict(extra="ignore", strict=True)
"""Unknown fields are ignored (clients send OpenAI fields this server has no use for); known ones must
have their declared type (no "5" for 5, no 0 for false), so the server accepts what its schema says."""


class ContentPart(BaseModel):
    """An OpenAI content part; only ``{"type": "text", "text": ...}`` parts are read, others are ignored."""

    model_config = STRICT
    type: Text
    text: Text | None = None


class Message(BaseModel):
    model_config = STRICT
    role: Literal["system", "user", "assistant", "developer"]
    content: Text | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = STRICT
    model: Text | None = None
    """The served model's name (``GET /v1/models``); any other name is 404: the server never loads another model."""
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: Integer(gt=0) | None = None
    max_completion_tokens: Integer(gt=0) | None = None
    stream: bool = False
    n: Integer(ge=1, le=1) = 1
    """Answers per request: only 1."""
    seed: Integer(ge=-(2**53 - 1), le=2**53 - 1) | None = None
    """The integers every JSON client carries exactly (a larger one overflowed torch's seed: 500)."""
    include_reasoning: bool = False
    """Return a reasoning model's <think> section as ``reasoning_content`` (never part of ``content``)."""


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The OpenAI error shape, for every 4xx/5xx this server answers."""

    error: ErrorDetail


class Triage(BaseModel):
    triage: str | None
    """The guardrails' label of the latest user turn (general, emergency, crisis, harmful, ...)."""
    fired: list[str]
    """The post-checks that changed the answer."""


class Completion(ChatCompletion):
    """``openai.types.chat.ChatCompletion`` plus medtune's ``medtune`` field."""

    medtune: Triage


class CompletionChunk(ChatCompletionChunk):
    """One streamed event's JSON: ``openai.types.chat.ChatCompletionChunk``; the last one adds ``medtune``."""

    medtune: Triage | None = None


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    workers: int
    """Generations that may run at once."""
    workers_busy: int
    """Workers generating now."""
    workers_free: int
    waiting: int
    """Requests queued for a worker."""
    pending: int
    """Busy + waiting."""
    queue_size: int
    requests: int
    generations: int
    streams_cancelled: int
    """Streams whose client went away before the end (their generation stopped at the next token)."""
    started: float


STREAM = (
    "With `\"stream\": true`: server-sent events. Each `data:` line is a JSON `ChatCompletionChunk` "
    "(`openai.types.chat`); the last chunk carries `finish_reason`, `usage` and `medtune`; then `data: [DONE]`."
)
SSE_EVENT = {  # one event, as Open API 3.1 reads a text/event-stream schema (3.2 would call it itemSchema)
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {"anyOf": [
            {"const": "[DONE]"},
            {"type": "string", "contentMediaType": "application/json", "contentSchema": {"$ref": "#/components/schemas/CompletionChunk"}},
        ]},
    },
}


def _error(description: str) -> dict:
    return {"model": ErrorResponse, "description": description}


BODY_LIMITS = {
    408: _error("The request body did not arrive within `serve.body_timeout` seconds (`request_timeout`)."),
    413: _error("The request body is over `serve.max_request_bytes` (`request_too_large`), refused before it is parsed."),
}
AUTH = {401: _error("Missing or wrong `Authorization: Bearer <key>` (only when the server has an API key).")}
CHAT_RESPONSES = {
    200: {"model": Completion, "description": "The guarded answer.", "content": {"text/event-stream": {"schema": SSE_EVENT}}},
    400: _error("Invalid request: a field that does not validate, a limit (`max_tokens`, messages, prompt tokens), "
                "`n` other than 1, or a conversation that does not end with a user turn."),
    **AUTH,
    404: _error("`model` names a model this server does not hold (`model_not_found`)."),
    **BODY_LIMITS,
    429: _error("All workers busy and the queue full (`queue_full`)."),
    503: _error("No worker became free within `serve.queue_timeout` seconds (`queue_timeout`)."),
}
CHAT_RESPONSES[200]["description"] += " " + STREAM
MODELS_RESPONSES = {200: {"model": ModelList, "description": "The one model this server holds."}, **AUTH, **BODY_LIMITS}
HEALTH_RESPONSES = {200: {"model": Health, "description": "Status and worker counts."}, **BODY_LIMITS}


def finish_openapi(schema: dict, api_key: bool, model_name: str, max_tokens: int, max_messages: int) -> dict:
    """Drop FastAPI's default 422 (validation errors are answered 400 in the OpenAI shape); write this
    server's limits and model name into the request schema; when the server has a key, declare the
    bearer scheme on ``/v1/*``."""
    components = schema.setdefault("components", {})
    request = components["schemas"]["ChatRequest"]["properties"]
    request["model"]["anyOf"][0]["enum"] = [model_name]
    request["messages"]["maxItems"] = max_messages
    for name in ("max_tokens", "max_completion_tokens"):
        request[name]["anyOf"][0]["maximum"] = max_tokens
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    for path, ops in schema["paths"].items():
        for op in ops.values():
            op["responses"].pop("422", None)
            if api_key and path.startswith("/v1/"):
                op["security"] = [{"bearer": []}]
            elif "401" in op["responses"] and not api_key:
                del op["responses"]["401"]
    chunk = CompletionChunk.model_json_schema(ref_template="#/components/schemas/Chunk_{model}", mode="serialization")
    components["schemas"].update({f"Chunk_{name}": d for name, d in chunk.pop("$defs", {}).items()}, CompletionChunk=chunk)
    if api_key:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return schema
