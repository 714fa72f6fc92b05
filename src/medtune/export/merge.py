"""The merged model: de-quantized base + adapter → ``merge_and_unload`` → safetensors, checked against base+adapter.

The adapter is merged into the *de-quantized* base (``model.quantization`` is ignored) in
``export.dtype``: merging LoRA deltas into 4-bit weights would re-round them and lose the
fine-tuning. The merged model's logits are compared with base+adapter's on fixed prompts
(``merge_check.json``). ``generation_config.json`` lists every stop id the chat template ends a
turn with, so llama.cpp, Ollama and transformers all stop where medtune does.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medtune.core.atomic import write_json
from medtune.core.config import RunConfig
from medtune.core.rundir import RunDir
from medtune.export import ExportError

log = logging.getLogger(__name__)

VERIFY_PROMPTS = (
    "What are common symptoms of the flu?",
    "How can I lower my blood pressure without medicine?",
    "Is it safe to exercise with asthma?",
    "What does a high cholesterol result mean?",
)


def merge(run: RunDir, cfg: RunConfig, target: Path) -> dict:
    """De-quantized base in ``export.dtype`` + adapter → merge_and_unload → safetensors; logits checked.

    The merge itself is ``core.models.merge_adapter`` (the one merge, also used by multi-stage
    ``start: merge``); its hooks compare logits before and after and set the generation config.
    """
    import torch

    from medtune.core.models import merge_adapter
    from medtune.inference.generator import Generator

    dtype = cfg.export.dtype
    seen: dict = {}

    def logits_before(model, tokenizer):
        seen["probe"] = probe_batch(tokenizer, cfg)
        with torch.inference_mode():
            seen["before"] = model(**seen["probe"]).logits.float()

    def check_and_configure(merged, tokenizer):
        probe, before = seen["probe"], seen["before"]
        with torch.inference_mode():
            after = merged(**probe).logits.float()
        mask = probe["attention_mask"].bool()
        diff = (before - after).abs()[mask].max().item()
        tolerance = cfg.export.merge_tolerance * (1 if dtype == "float32" else 50)
        agree = (before.argmax(-1) == after.argmax(-1))[mask].float().mean().item()
        seen["check"] = {"dtype": dtype, "max_abs_logit_diff": diff, "tolerance": tolerance, "argmax_agreement": agree,
                         "positions": int(mask.sum())}
        if diff > tolerance:
            raise ExportError(f"merged model differs from base+adapter by {diff:.2e} in logits (tolerance {tolerance:.0e})")
        stops = seen["stops"] = Generator(merged, tokenizer, cfg.data.template, cfg.data.system_prompt).stop_ids()
        g = merged.generation_config
        g.eos_token_id = stops if len(stops) > 1 else stops[0]
        g.pad_token_id = tokenizer.pad_token_id
        g.bos_token_id = tokenizer.bos_token_id
        gc = cfg.generation
        g.do_sample = gc.temperature > 0
        g.temperature, g.top_p = (gc.temperature, gc.top_p) if gc.temperature > 0 else (None, None)
        # transformers' n-gram blocking would count the prompt (inference/penalties.py): the plain penalty stands in
        g.repetition_penalty, g.max_new_tokens = plain_repeat_penalty(gc), gc.max_new_tokens
        g.no_repeat_ngram_size = None
        merged.config.eos_token_id = g.eos_token_id

    merge_adapter(cfg.model, run.adapter, target, dtype, before_merge=logits_before, before_save=check_and_configure)
    check = seen["check"]
    write_json(target / "merge_check.json", check, indent=2)
    log.info(
        "merged (%s) → %s: max |Δlogit| %.2e vs base+adapter (tolerance %.0e)",
        dtype,
        target,
        check["max_abs_logit_diff"],
        check["tolerance"],
    )
    return {"path": str(target), "stop_ids": seen["stops"], **check}


def probe_batch(tokenizer, cfg: RunConfig):
    """Fixed chat prompts (left-padded), rendered exactly as generation renders them."""
    from medtune.data.templates import prompt_text

    texts = [prompt_text(tokenizer, [{"role": "user", "content": q}], cfg.data.template, cfg.data.system_prompt) for q in VERIFY_PROMPTS]
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def stop_ids(tokenizer) -> list[int]:
    """The ids generation stops at (EOS and end-of-turn tokens), as ``Generator.stop_ids`` finds them."""
    from medtune.inference.generator import Generator

    return Generator(None, tokenizer).stop_ids()


def plain_repeat_penalty(gc) -> float:
    """The repetition penalty for a runtime without medtune's answer-only n-gram blocking (a merged model's
    ``generation_config``, Ollama, vLLM): the configured one, or at least 1.1 where ``no_repeat_ngram_size``
    is set, since their n-gram blocking (if any) counts the prompt and without either a small model loops."""
    return max(gc.repetition_penalty, 1.1) if gc.no_repeat_ngram_size else gc.repetition_penalty
