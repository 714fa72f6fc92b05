"""Loading a model to answer with: a run directory (base + its adapter) or a plain base model."""

from __future__ import annotations

from medtune.inference.generator import Generator

INFERENCE_SECTIONS = ("generation", "guardrails", "chat", "serve", "retrieval")
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


def load_generator(reference: str, quantization: str | None = None, cfg=None) -> tuple[Generator, object]:
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
