"""The model side of answering: prompts rendered as in training, batched and streamed generation.

Prompts are rendered with the same template as training (``templates.prompt_text``), padded on
the left so a batch of prompts generates together, and generation stops at the model's EOS /
end-of-turn tokens. Temperature 0 means greedy decoding.

The system prompt is an argument of every call (``system``): ``None`` means the generator's
default persona (``system_prompt``, the one the run was trained with), ``""`` no system prompt
at all. Nobody changes ``system_prompt`` after construction, so one generator can serve several
threads, each with its own system prompt.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from medtune.core.config import GenerationConfig
from medtune.data.templates import prompt_text

GREEDY_BELOW = 1e-4
"""Temperatures below this decode greedily: sampling there is greedy in effect, and a tiny one (1e-300)
would turn the logits divided by it into inf and the sampler's probabilities into NaN."""

System = str | Sequence[str | None] | None
"""One system prompt for every conversation, or one per conversation (``None``: the default persona)."""


@dataclass(frozen=True)
class Generator:
    model: object
    tokenizer: object
    template: str = "chat"
    system_prompt: str | None = None
    """The default persona (``data.system_prompt``); never mutated: pass ``system`` to a call instead."""

    def stop_ids(self) -> list[int]:
        """EOS ids from the tokenizer and generation config (chat models often have several)."""
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            tid = self.tokenizer.convert_tokens_to_ids(token) if token in self.tokenizer.get_vocab() else None
            ids.add(tid)
        return sorted(i for i in ids if i is not None)

    @functools.cached_property
    def digit_ids(self) -> list[int]:
        """The tokenizer's all-digit tokens: answer-only n-gram blocking leaves them alone (``inference.penalties``)."""
        from medtune.inference.penalties import digit_ids

        return digit_ids(self.tokenizer)

    def _kwargs(self, cfg: GenerationConfig, max_new_tokens: int | None, temperature: float | None, prompt_length: int) -> dict:
        """``model.generate`` arguments for prompts padded to ``prompt_length`` tokens."""
        temperature = cfg.temperature if temperature is None else temperature
        kw = dict(
            max_new_tokens=max_new_tokens or cfg.max_new_tokens,
            eos_token_id=self.stop_ids(),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if cfg.penalize_prompt:
            kw.update(repetition_penalty=cfg.repetition_penalty, no_repeat_ngram_size=cfg.no_repeat_ngram_size)
        else:
            from medtune.inference.penalties import answer_penalties

            digits = self.digit_ids if cfg.no_repeat_ngram_size else ()
            kw["logits_processor"] = answer_penalties(cfg.repetition_penalty, cfg.no_repeat_ngram_size, prompt_length, digits)
        if temperature >= GREEDY_BELOW:
            kw.update(do_sample=True, temperature=temperature, top_p=cfg.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    def _static_cache(self, cfg: GenerationConfig, length: int) -> dict:
        """On a CPU (``generation.static_cache``), a batch's KV cache allocated once for ``length`` positions (``StaticCache``)
        rather than grown by concatenation at every token: ~10% faster, the same answers (benchmarks/eval_speed.py). Made per
        call, so a long prompt never leaves a large cache behind; not on a GPU, where transformers would compile the
        model for a static cache, nor for an architecture that does not declare itself compilable (its cache may not be
        a plain static one)."""
        device = getattr(self.model, "device", None)
        if not cfg.static_cache or device is None or device.type != "cpu" or not getattr(self.model, "_can_compile_fullgraph", False):
            return {}
        from transformers import StaticCache

        return {"cache": StaticCache(config=self.model.config.get_text_config(decoder=True), max_cache_len=length)}

    def prompts(self, conversations: list[list[dict]], system: System = None) -> list[str]:
        """Generation prompts for conversations ending with a user turn."""
        if system is None or isinstance(system, str):
            system = [system] * len(conversations)
        return [
            prompt_text(self.tokenizer, conv, self.template, (self.system_prompt if s is None else s) or None)
            for conv, s in zip(conversations, system, strict=True)
        ]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def generate(
        self,
        conversations: list[list[dict]],
        cfg: GenerationConfig,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        system: System = None,
        progress: bool = False,
    ) -> list[str]:
        """Answers for conversations ending with a user turn, ``cfg.batch_size`` at a time."""
        return self.generate_from(self.prompts(conversations, system), cfg, max_new_tokens, temperature, progress)

    def generate_from(self, texts: list[str], cfg: GenerationConfig, max_new_tokens: int | None = None, temperature: float | None = None,
                      progress: bool = False) -> list[str]:
        """Answers for rendered prompts (``prompts``), ``cfg.batch_size`` at a time, seeded with ``cfg.seed``."""
        return [text for text, _ in self.generate_stopped(texts, cfg, max_new_tokens, temperature, progress)]

    def generate_stopped(self, texts: list[str], cfg: GenerationConfig, max_new_tokens: int | None = None,
                         temperature: float | None = None, progress: bool = False) -> list[tuple[str, bool]]:
        """``(answer, stopped)`` per rendered prompt: ``stopped`` is True when generation ended on an
        EOS / end-of-turn token (``stop_ids``), False when it ran into ``max_new_tokens``."""
        import torch
        from tqdm.auto import tqdm

        self.tokenizer.padding_side = "left"
        answers: list[tuple[str, bool] | None] = [None] * len(texts)
        stops = self.stop_ids()
        torch.manual_seed(cfg.seed)
        # longest prompts first, so each batch pads little (15% fewer prompt positions on grounded prompts);
        # the answers go back in input order
        lengths = [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]] if texts else []
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        batches = range(0, len(texts), cfg.batch_size)
        for start in tqdm(batches, desc="generating", disable=not progress, unit="batch"):
            rows = order[start : start + cfg.batch_size]
            chunk = [texts[i] for i in rows]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
            kw = self._kwargs(cfg, max_new_tokens, temperature, enc["input_ids"].shape[1])
            with torch.inference_mode():
                out = self.model.generate(**enc, **kw, **self._static_cache(cfg, enc["input_ids"].shape[1] + kw["max_new_tokens"]))
            new = out[:, enc["input_ids"].shape[1] :]
            # a row that stopped early holds its stop token, then padding; one that ran out of tokens holds none
            stopped = torch.isin(new, torch.tensor(stops, device=new.device)).any(dim=1).tolist()
            texts_out = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            for i, t, s in zip(rows, texts_out, stopped, strict=True):
                answers[i] = (t.strip(), bool(s))
        return answers

    def stream(self, conversation: list[dict], cfg: GenerationConfig, system: str | None = None, max_new_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        """Yield text pieces of one answer as they are generated (see ``stream_from``)."""
        return self.stream_from(self.prompts([conversation], system)[0], cfg, max_new_tokens, temperature)

    def stream_from(self, text: str, cfg: GenerationConfig, max_new_tokens: int | None = None,
                    temperature: float | None = None) -> Iterator[str]:
        """Yield text pieces of the answer to a rendered prompt as they are generated.

        ``model.generate`` runs in a thread named ``medtune-generate``, started at the first
        ``next()``. Closing this iterator early (an API client that went away, a UI that stops
        listening) stops that generation at its next token and waits for the thread, so no orphaned
        generation keeps the model busy. An error inside ``generate`` is raised here, instead of
        leaving the reader waiting for text.
        """
        from threading import Event, Thread

        from transformers import StoppingCriteriaList, TextIteratorStreamer

        enc = self.tokenizer([text], return_tensors="pt", add_special_tokens=False).to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kw = self._kwargs(cfg, max_new_tokens, temperature, enc["input_ids"].shape[1])
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
