"""``stages`` and ``sweep``: several runs composed from one config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from medtune.core.config.base import Section


class StageConfig(Section):
    name: str
    """Stage name: its run subdirectory (output_dir/name/<stage>) and what replay sources refer to."""
    start: Literal["continue", "merge"] = "continue"
    """How this stage begins from the previous stage's adapter: keep training it ('continue'), or merge it
    into the de-quantized base and train a fresh adapter on the merged model ('merge'). Ignored for stage 1."""
    method: Literal["sft", "dpo"] | None = None
    """Shorthand for train.method in this stage (e.g. SFT, then a 'dpo' stage on preference pairs); None = the train section's."""
    model: dict[str, Any] = {}
    """Overrides of the model section for this stage."""
    lora: dict[str, Any] = {}
    """Overrides of the lora section."""
    data: dict[str, Any] = {}
    """Overrides of the data section: usually its own sources, e.g. {kind: replay, path: <earlier stage>, fraction: 0.1}."""
    train: dict[str, Any] = {}
    """Overrides of the train section."""
    generation: dict[str, Any] = {}
    """Overrides of the generation section."""
    eval: dict[str, Any] = {}
    """Overrides of the eval section."""


class SweepConfig(Section):
    grid: dict[str, list[Any]] = {}
    """Dotted config keys and the values to try, e.g. {train.learning_rate: [1e-4, 3e-4], lora.r: [8, 16]}."""
    mode: Literal["grid", "random"] = "grid"
    """'grid' = every combination; 'random' = a seeded sample of `samples` combinations."""
    samples: int | None = Field(None, gt=0)
    """Points drawn in random mode (without repeats)."""
    seeds: list[int] = []
    """Training seeds run at every point (train.seed); empty = the config's own seed once."""
    metric: str = "eval_loss"
    """Column that picks the best point (mean over seeds): eval_loss, train_loss, rougeL, bleu, ..."""
    greater_is_better: bool | None = None
    """Direction of metric; None = lower is better for losses and perplexity, higher for the rest."""
    seed: int = 0
    """Seed of the random sample."""

    @model_validator(mode="after")
    def _points(self) -> SweepConfig:
        if any(not values for values in self.grid.values()):
            raise ValueError("every grid key needs at least one value")
        if self.mode == "random" and self.samples is None:
            raise ValueError("mode 'random' needs samples")
        return self
