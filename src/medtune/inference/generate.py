"""Batched text generation shared by ask, eval, chat, the UI, the API and the safety suite.

Prompts are rendered with the same template as training (``templates.prompt_text``),
padded on the left so a batch of prompts generates together, and generation stops at the
model's EOS / end-of-turn tokens. Temperature 0 means greedy decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from medtune.core.config import GenerationConfig
from medtune.data.templates import prompt_text


@dataclass
class Generator:
    model: object
    tokenizer: object
    template: str = "chat"
    system_prompt: str | None = None

    def stop_ids(self) -> list[int]:
        """EOS ids from the tokenizer and generation config (chat models often have several)."""
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            tid = self.tokenizer.convert_tokens_to_ids(token) if token in self.tokenizer.get_vocab() else None
            ids.add(tid)
        return sorted(i for i in ids if i is not None)

    def _kwargs(self, cfg: GenerationConfig, max_new_tokens: int | None, temperature: float | None) -> dict:
        temperature = cfg.temperature if temperature is None else temperature
        kw = dict(
            max_new_tokens=max_new_tokens or cfg.max_new_tokens,
            repetition_penalty=cfg.repetition_penalty,
            eos_token_id=self.stop_ids(),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=cfg.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    def prompts(self, conversations: list[list[dict]], system_addenda: list[str | None] | None = None) -> list[str]:
        addenda = system_addenda or [None] * len(conversations)
        out = []
        for conv, extra in zip(conversations, addenda):
            system = "\n\n".join(s for s in (self.system_prompt, extra) if s) or None
            out.append(prompt_text(self.tokenizer, conv, self.template, system))
        return out

    def generate(
        self,
        conversations: list[list[dict]],
        cfg: GenerationConfig,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        system_addenda: list[str | None] | None = None,
        progress: bool = False,
    ) -> list[str]:
        """Answers for conversations ending with a user turn, ``cfg.batch_size`` at a time."""
        import torch
        from tqdm.auto import tqdm

        texts = self.prompts(conversations, system_addenda)
        self.tokenizer.padding_side = "left"
        answers: list[str] = []
        torch.manual_seed(cfg.seed)
        batches = range(0, len(texts), cfg.batch_size)
        for start in tqdm(batches, desc="generating", disable=not progress, unit="batch"):
            chunk = texts[start : start + cfg.batch_size]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
            with torch.inference_mode():
                out = self.model.generate(**enc, **self._kwargs(cfg, max_new_tokens, temperature))
            new = out[:, enc["input_ids"].shape[1] :]
            answers.extend(t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return answers

    def stream(self, conversation: list[dict], cfg: GenerationConfig, system_addendum: str | None = None, **overrides) -> Iterator[str]:
        """Yield text pieces of one answer as they are generated (chat REPL, UI, API).

        ``model.generate`` runs in a thread named ``medtune-generate``. Closing this iterator early
        (an API client that went away, a UI that stops listening) stops that generation at its next
        token and waits for the thread, so no orphaned generation keeps the model busy. An error
        inside ``generate`` is raised here, instead of leaving the reader waiting for text.
        """
        from threading import Event, Thread

        from transformers import StoppingCriteriaList, TextIteratorStreamer

        text = self.prompts([conversation], [system_addendum])[0]
        enc = self.tokenizer([text], return_tensors="pt", add_special_tokens=False).to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kw = self._kwargs(cfg, overrides.get("max_new_tokens"), overrides.get("temperature"))
        stop, failed = Event(), []

        def run() -> None:
            try:
                self.model.generate(**enc, **kw, streamer=streamer, stopping_criteria=StoppingCriteriaList([_stop_when_set(stop)]))
            except BaseException as e:  # re-raised in the reader's thread below
                failed.append(e)
                streamer.end()

        thread = Thread(target=run, daemon=True, name="medtune-generate")
        thread.start()
        try:
            yield from streamer
        finally:
            stop.set()
            thread.join()
        if failed:
            raise failed[0]


def _stop_when_set(event):
    """A transformers stopping criterion that ends generation once ``event`` is set."""
    import torch
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopWhenSet()


INFERENCE_SECTIONS = ("generation", "guardrails", "chat", "serve")
"""Config sections that explicit settings (``--config``/``--set``) override even for a run directory."""


def resolve_config(reference: str, explicit=None):
    """The config a model reference runs under, without loading the model.

    A run directory brings its own config; a base model gets the defaults (or ``explicit``) with
    ``model.name`` set. Explicit settings win for the inference-time sections (``INFERENCE_SECTIONS``);
    a run's model, data and training settings stay its own.
    """
    from medtune.core.config import RunConfig
    from medtune.core.rundir import RunDir

    run = RunDir(reference)
    if run.is_run():
        cfg = run.load_config()
    else:
        cfg = (explicit or RunConfig()).model_copy(deep=True)
        cfg.model.name = reference
    if explicit is not None:
        cfg = cfg.model_copy(update={name: getattr(explicit, name) for name in INFERENCE_SECTIONS})
    return cfg


def load_generator(reference: str, quantization: str | None = None, cfg=None):
    """A Generator for a run directory (base model + its adapter) or a plain base model.

    Returns ``(generator, config)``, the config as ``resolve_config(reference, cfg)`` gives it.
    """
    from pathlib import Path

    from medtune.core.models import load_base
    from medtune.core.rundir import RunDir

    check_quantization(quantization)
    run = RunDir(reference)
    cfg = resolve_config(reference, cfg)
    if run.is_run():
        if not (run.adapter / "adapter_config.json").exists():
            raise FileNotFoundError(f"{run.path}: run has no trained adapter yet (adapter/adapter_config.json missing)")
        _, tokenizer, model = load_base(cfg.model, quantization)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(run.adapter))
    else:
        if Path(reference).is_dir() and (Path(reference) / "adapter_config.json").exists():
            raise ValueError(f"{reference}: a bare adapter directory; pass its run directory instead")
        _, tokenizer, model = load_base(cfg.model, quantization)
    model.eval()
    return Generator(model, tokenizer, cfg.data.template, cfg.data.system_prompt), cfg


def check_quantization(quantization: str | None) -> None:
    from medtune.core.models import ModelError

    if quantization not in (None, "none", "4bit", "8bit"):
        raise ModelError(f"--quantization {quantization!r}: choose none, 4bit or 8bit")
