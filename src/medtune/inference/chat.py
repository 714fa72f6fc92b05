"""Multi-turn chat: the history keeper behind ``medtune chat`` and the UI, over ``Responder``.

A ``ChatSession`` keeps the conversation and answers one user turn at a time through its
``Responder`` (guardrails, the model, the think split, the post-checks: see ``responder.py``)::

    session = ChatSession(Responder(generator, cfg, system_prompt=cfg.chat.system_prompt))
    reply = session.send("What is a normal resting heart rate?")
    for kind, text in reply:          # ("think", ...) and ("answer", ...) pieces as they arrive
        print(text, end="")
    reply.answer, reply.triage, reply.thinking

The prompt the model sees is cut to ``chat.history_tokens`` (the oldest user/assistant pairs are
left out first; ``Responder.window``). The assistant turns kept in the history are the answers as
shown (after the guardrails), without the disclaimer, so a removed dose never goes back into the
model's context, and never any ``<think>`` text. A session always asks for the think section: it
is kept on the reply (``reply.thinking``), and the REPL and the UI show it only on request
(``chat.show_think``, ``/think``, the UI's checkbox).
"""

from __future__ import annotations

from medtune.inference.responder import Reply, Responder


class ChatSession:
    """A conversation with one model, through its ``Responder``, within a token budget."""

    def __init__(self, responder: Responder, history: list[dict] | None = None):
        self.responder = responder
        self.cfg = responder.cfg
        self.history: list[dict] = list(history or [])
        """User/assistant messages so far (assistant turns as shown, without the disclaimer)."""
        self.show_think = self.cfg.chat.show_think
        self.last: Reply | None = None

    @property
    def guardrails(self):
        return self.responder.guardrails

    def reset(self) -> None:
        self.history.clear()
        self.last = None

    def send(self, prompt: str, **overrides) -> Reply:
        """Answer a user turn; iterate the returned ``Reply`` to stream it (the turn joins the history at the end).

        ``overrides``: ``generation`` settings for this answer (``temperature``, ``max_new_tokens``).
        """
        prompt = prompt.strip()
        if not prompt:
            raise ValueError("empty message")
        reply = self.responder.stream(prompt, self.history, think=True, history_tokens=self.cfg.chat.history_tokens, **overrides)
        reply.on_done = self._remember
        self.last = reply
        return reply

    def _remember(self, reply: Reply) -> None:
        self.history += [{"role": "user", "content": reply.prompt}, {"role": "assistant", "content": self._for_history(reply.answer)}]

    def _for_history(self, answer: str) -> str:
        disclaimer = self.guardrails.disclaimer if self.guardrails else ""
        if disclaimer and answer.endswith(disclaimer):
            answer = answer[: -len(disclaimer)]
        return answer.strip()
