"""An OpenAI-compatible HTTP API over the guarded answer path (FastAPI + uvicorn).

    POST /v1/chat/completions   multi-turn messages; "stream": true answers with server-sent events
    GET  /v1/models             the one model this server holds
    GET  /health                status, busy/free workers, queue length, generations run, streams cancelled by their client

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
413 before they are parsed, bodies still arriving after ``serve.body_timeout`` seconds 408; a
``model`` other than the served one is 404 (nothing else is ever loaded); prompts over
``serve.max_prompt_tokens`` (counted before a worker is taken) and ``max_tokens`` over
``serve.max_tokens`` get 400. The server binds 127.0.0.1 unless told
otherwise; ``serve.api_key`` (or the ``MEDTUNE_API_KEY`` environment variable) requires
``Authorization: Bearer <key>``.

The modules: ``schema`` (request, response and error models; the status codes each operation
documents in ``/openapi.json``), ``limits`` (worker slots; the gate for key, body size and body
time), ``app`` (routes, ``load``, ``serve``).
"""

from medtune.apps.serve.app import create_app, load, serve
from medtune.apps.serve.limits import APIError, Slots

__all__ = ["APIError", "Slots", "create_app", "load", "serve"]
