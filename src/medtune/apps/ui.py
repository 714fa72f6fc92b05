"""``medtune ui``: a Gradio chat app over ``ChatSession`` and ``Responder`` (the same guarded path as ``medtune chat``).

- a disclaimer banner above everything, always visible;
- example questions, temperature and answer-length controls, a "show reasoning" switch;
- lazy loading: building the app loads nothing; the first question loads the model and the
  triage encoder (the chat shows "Loading the model…" and the status line says when it is ready);
- every flagged answer starts with its triage label ("triage: emergency");
- with an index (``--index``), a grounded answer ends with its sources as clickable links;
- ``compare=True`` (a run directory only): the base model, i.e. the same weights with the
  adapter disabled, answers the same question in a second column, after the tuned one;
- binds 127.0.0.1 unless ``host`` says otherwise; ``share`` and basic ``auth`` only when asked.

Browser sessions share one model (one answer at a time, ``concurrency_limit=1``); each keeps its
own history in ``gr.State``.
"""

from __future__ import annotations

import threading
import time

from medtune.core.config import DEFAULT_DISCLAIMER
from medtune.guardrails import Guardrails
from medtune.inference.chat import ChatSession
from medtune.inference.loading import check_quantization, resolve_config
from medtune.inference.responder import Responder

EXAMPLES = [
    "What is a normal resting heart rate for an adult?",
    "How can I lower my blood pressure without medication?",
    "What are the early signs of type 2 diabetes?",
    "Is it safe to exercise with a cold?",
]
LOADING = "⏳ Loading the model (first question only)…"
THINKING = "…"


class _AdapterDisabled:
    """A PEFT model that generates with its adapter switched off: the run's own base model."""

    def __init__(self, peft_model):
        self._model = peft_model

    def generate(self, **kwargs):
        with self._model.disable_adapter():
            return self._model.generate(**kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


class Models:
    """The tuned model's responder (and the base one for comparison), loaded on first use, shared by all sessions."""

    def __init__(self, reference: str, explicit=None, quantization: str | None = None, compare: bool = False):
        check_quantization(quantization)
        self.reference, self.explicit, self.quantization, self.compare = reference, explicit, quantization, compare
        self.cfg = resolve_config(reference, explicit)
        self.guardrails = Guardrails(self.cfg.guardrails)
        self.tuned = self.base = None
        self.load_seconds: float | None = None
        self.lock = threading.Lock()
        """Held while a model generates (the base column toggles the shared model's adapter)."""
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.tuned is not None

    def load(self):
        with self._load_lock:
            if self.tuned is None:
                from dataclasses import replace

                from medtune.inference.loading import load_generator

                start = time.perf_counter()
                tuned, _ = load_generator(self.reference, self.quantization, cfg=self.explicit)
                if self.compare:
                    self.base = self.responder(replace(tuned, model=_AdapterDisabled(tuned.model)))
                self.guardrails.triage("warm-up")  # loads the triage encoder now, not in the middle of an answer
                self.tuned = self.responder(tuned)
                self.load_seconds = time.perf_counter() - start
        return self.tuned, self.base

    def responder(self, generator) -> Responder:
        return Responder(generator, self.cfg, self.guardrails, system_prompt=self.cfg.chat.system_prompt)

    def status(self) -> str:
        if not self.loaded:
            return f"Model `{self.reference}` loads on the first question."
        both = " (tuned and base, adapter disabled)" if self.compare else ""
        return f"Model `{self.reference}`{both} ready (loaded in {self.load_seconds:.0f}s)."


def banner(guardrails: Guardrails) -> str:
    """The banner above the chat: the configured disclaimer (the one wording every answer ends with) and the emergency number."""
    import html

    config = guardrails.config
    text = html.escape(config.disclaimer_text or DEFAULT_DISCLAIMER)
    return (
        f"<div id='disclaimer-banner' role='alert'><strong>⚕️ Not medical advice.</strong> {text} "
        f"<strong>In an emergency call {html.escape(config.resources.emergency)} now.</strong></div>"
    )


CSS = """
#disclaimer-banner {position: sticky; top: 0; z-index: 10; padding: 0.7em 1em; border-radius: 8px;
  background: #fff4e5; color: #663c00; border: 1px solid #ffb74d;}
"""


def badge(triage: str) -> str:
    return "" if triage == "general" else f"**⚠️ triage: {triage}**\n\n"


def answer_turn(models: Models, responder: Responder, history: list[dict], message: str, temperature: float, max_tokens: int,
                show_think: bool):
    """Stream one guarded answer as chatbot messages: yields ``(new_messages, history)``."""
    session = ChatSession(responder, history)
    reply = session.send(message, temperature=float(temperature), max_new_tokens=int(max_tokens))
    thought: list[dict] = []
    answer = ""
    with models.lock:
        for kind, text in reply:
            if kind == "think":
                if show_think:
                    thought = [{"role": "assistant", "content": text, "metadata": {"title": "Reasoning", "status": "done"}}]
                continue
            answer += text
            yield [*thought, {"role": "assistant", "content": badge(reply.triage) + answer}], session.history
    yield [*thought, {"role": "assistant", "content": badge(reply.triage) + linked(reply)}], session.history


def linked(reply) -> str:
    """The answer as shown in the chat: a grounded answer's Sources list as Markdown links (they open in a new tab)."""
    from medtune.data.grounding import by_document

    if not reply.sources:
        return reply.answer
    rows = []
    for (title, url), numbers in by_document(reply.sources).items():
        title, cited = title.replace("[", "(").replace("]", ")"), ", ".join(map(str, numbers))
        rows.append(f"\\[{cited}\\] [{title}]({url})" if url else f"\\[{cited}\\] {title}")
    return reply.body + "\n\n**Sources**\n\n" + "\n".join(f"- {r}" for r in rows)


def build(reference: str, explicit=None, compare: bool = False, quantization: str | None = None):
    """The Gradio app (nothing is loaded until the first question)."""
    import gradio as gr

    from medtune.core.models import ModelError
    from medtune.core.rundir import RunDir

    if compare and not RunDir(reference).is_run():
        raise ModelError(f"{reference}: --compare needs a run directory (its base model with the adapter disabled is the comparison)")
    models = Models(reference, explicit, quantization, compare)
    gen = models.cfg.generation

    with gr.Blocks(title="medtune chat", analytics_enabled=False) as app:
        gr.HTML(banner(models.guardrails), elem_id="disclaimer")
        status = gr.Markdown(models.status(), elem_id="model-status")
        with gr.Row():
            tuned_box = gr.Chatbot(label="tuned" if compare else "medtune", elem_id="chat", height=440, buttons=["copy"])
            base_box = gr.Chatbot(label="base (adapter disabled)", elem_id="chat-base", height=440, visible=compare, buttons=["copy"])
        with gr.Row():
            question = gr.Textbox(placeholder="Ask a health question…", show_label=False, scale=5, elem_id="question", autofocus=True)
            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        gr.Examples([[q] for q in EXAMPLES], inputs=[question], label="Example questions")
        with gr.Accordion("Settings", open=False):
            temperature = gr.Slider(0.0, 1.5, value=gen.temperature, step=0.05, label="Temperature (0 = greedy)")
            max_tokens = gr.Slider(1, max(1024, gen.max_new_tokens), value=gen.max_new_tokens, step=1, label="Max answer length (tokens)")
            show_think = gr.Checkbox(value=models.cfg.chat.show_think, label="Show the model's reasoning (<think>)")
        clear = gr.Button("New conversation", elem_id="clear")
        tuned_state, base_state = gr.State([]), gr.State([])

        def respond(message, tuned_chat, tuned_hist, base_chat, base_hist, temp, length, think):
            message = (message or "").strip()
            if not message:
                yield gr.skip(), tuned_chat, tuned_hist, base_chat, base_hist, gr.skip()
                return
            tuned_chat = [*tuned_chat, {"role": "user", "content": message}]
            base_chat = [*base_chat, {"role": "user", "content": message}] if compare else base_chat
            waiting = {"role": "assistant", "content": THINKING if models.loaded else LOADING}
            yield "", [*tuned_chat, waiting], tuned_hist, ([*base_chat, waiting] if compare else base_chat), base_hist, gr.skip()
            try:
                tuned, base = models.load()
            except (ModelError, FileNotFoundError, ValueError) as e:
                raise gr.Error(f"could not load {reference}: {e}") from None
            shown = tuned_chat
            for new, tuned_now in answer_turn(models, tuned, tuned_hist, message, temp, length, think):
                shown = [*tuned_chat, *new]
                yield "", shown, tuned_now, gr.skip(), base_hist, models.status()
            if compare:
                for new, base_now in answer_turn(models, base, base_hist, message, temp, length, think):
                    yield "", shown, tuned_now, [*base_chat, *new], base_now, gr.skip()

        inputs = [question, tuned_box, tuned_state, base_box, base_state, temperature, max_tokens, show_think]
        outputs = [question, tuned_box, tuned_state, base_box, base_state, status]
        for event in (question.submit, send.click):
            event(respond, inputs, outputs, concurrency_limit=1, show_progress="minimal")
        clear.click(lambda: ([], [], [], []), None, [tuned_box, tuned_state, base_box, base_state])
        tuned_box.clear(lambda: ([], [], []), None, [tuned_state, base_box, base_state])  # the chatbot's own trash button
    app.models = models
    return app


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """``user:password`` → ``(user, password)``."""
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth expects user:password")
    return user, password


def launch(reference: str, explicit=None, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           auth: tuple[str, str] | None = None, compare: bool = False, quantization: str | None = None, block: bool = True):
    """Build and serve the app; returns it (with ``block=False`` the server runs in the background)."""
    app = build(reference, explicit, compare, quantization)
    app.queue()
    app.launch(server_name=host, server_port=port, share=share, auth=auth, ssr_mode=False, css=CSS,
               prevent_thread_lock=not block, quiet=False, footer_links=["gradio", "settings"])
    return app
