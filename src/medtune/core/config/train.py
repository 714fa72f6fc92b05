"""``train``: the trainer's settings (SFT or DPO)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medtune.core.config.base import Section

TRACKERS = ("tensorboard", "mlflow", "wandb")
"""Trackers medtune passes to the trainer's report_to (mlflow/wandb need their own packages)."""


class TrainConfig(Section):
    method: Literal["sft", "dpo"] = "sft"
    """'sft' = supervised fine-tuning on the answers (TRL SFTTrainer); 'dpo' = preference tuning on chosen vs rejected
    answers (TRL DPOTrainer; needs preference records, e.g. source kind 'preference'). Both train a LoRA/QLoRA adapter."""
    dpo_beta: float = Field(0.1, gt=0)
    """DPO: how far the tuned model may move from the reference (the model as training starts); lower = further."""
    dpo_loss: str = "sigmoid"
    """DPO: TRL loss_type (sigmoid = the DPO paper's loss, ipo, hinge, robust, ...)."""
    dpo_sft_weight: float = Field(0.0, ge=0)
    """DPO: weight of a language-model loss on the chosen answers added to the preference loss (TRL's 'sft' loss
    type; the RPO recipe); 0 = off. It holds the chosen answers' own likelihood up while DPO widens the margin."""
    dpo_completion_tokens: int | None = Field(None, gt=0)
    """DPO: score only the first N tokens of each chosen and rejected answer (None = whole answers). Where the answers
    are fixed templates, the whole-answer margin is won on the template's later tokens, which follow from its opening;
    cut to the opening, the margin can only grow by choosing the right answer to start (and each step is cheaper)."""
    dpo_rejected_end_of_turn: bool = False
    """DPO: keep the chat template's end of turn after each rejected answer. Off (the default): a rejected answer is
    scored without it, since what is wrong with a rejected answer is what it says, not that it stops; kept, DPO pushes
    the end of turn down after every rejected answer, and the tuned model learned to go on after its own replies."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the training set (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = use epochs)."""
    learning_rate: float = Field(2e-4, gt=0)
    """Peak learning rate."""
    batch_size: int = Field(4, gt=0)
    """Per-device micro-batch size."""
    grad_accum: int = Field(1, gt=0)
    """Gradient accumulation steps."""
    max_seq_length: int = Field(512, gt=8)
    """Longer examples are truncated."""
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    """Share of steps spent warming up the learning rate."""
    lr_scheduler: str = "cosine"
    """transformers scheduler name (linear, cosine, constant, ...)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    optim: str = "adamw_torch"
    """transformers optimizer name."""
    gradient_checkpointing: bool = False
    """Trade compute for memory."""
    logging_steps: int = Field(5, gt=0)
    """Log the loss every N steps."""
    eval_steps: int | None = None
    """Evaluate every N steps (None = at the end only)."""
    save_steps: int | None = None
    """Checkpoint every N steps (None = only the final adapter)."""
    save_total_limit: int = 2
    """Checkpoints kept on disk."""
    report_to: list[str] = ["tensorboard"]
    """Trackers (tensorboard, mlflow, wandb) passed to the trainer's report_to."""
    seed: int = 42
    """Training seed (init, dropout, data order)."""
    packing: bool = False
    """Pack examples into full rows without padding (padding-free, attention kept per example)."""
    group_by_length: bool = False
    """Batch examples of similar length together to cut padding."""
    threads: int | None = None
    """torch CPU threads (None = torch default)."""
    eval_strategy: Literal["auto", "no", "steps", "epoch"] = "auto"
    """When to evaluate on the held-out split during training: 'steps' (every eval_steps), 'epoch', 'no';
    'auto' = 'steps' when eval_steps is set, else 'no' (the evaluate stage still runs afterwards)."""
    keep_best: bool = False
    """Checkpoint at every evaluation and end with the best checkpoint's adapter (load_best_model_at_end)."""
    best_metric: str = "eval_loss"
    """Metric that picks the best checkpoint (metric_for_best_model): eval_loss, eval_mean_token_accuracy,
    eval_rougeL (needs eval_generate), eval_bertscore_f1 (needs eval_bertscore), ..."""
    eval_generate: int = Field(0, ge=0)
    """At each evaluation during training, answer this many held-out questions (the first ones, greedy) and
    log their ROUGE-L as eval_rougeL (history, TensorBoard, curves); 0 = none."""
    eval_generate_tokens: int = Field(96, gt=0)
    """New tokens per answer for eval_generate."""
    eval_bertscore: bool = False
    """Also log eval_bertscore_f1 of those answers (eval.bertscore_model)."""
    seeds: list[int] = []
    """Train the run once per seed (train.seed), each in its own run directory under output_dir/name/, and
    report mean ± spread across seeds and whether base → tuned exceeds it; empty = one run with seed."""

    loss: Literal["chunked", "plain"] = "chunked"
    """'chunked': the LM head only on completion positions, in chunks, without the full logits (see
    training.loss); 'plain': TRL's own head (every position; kept for comparison)."""

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in TRACKERS]
        if unknown:
            raise ValueError(f"unknown tracker {unknown[0]!r}; choose from {', '.join(TRACKERS)} (or [] for none)")
        return value

    @model_validator(mode="after")
    def _best_needs_eval(self) -> TrainConfig:
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ValueError("eval_strategy 'steps' needs eval_steps")
        if self.method == "dpo" and self.packing:
            raise ValueError("packing is for SFT; method 'dpo' scores whole chosen/rejected pairs (set packing: false)")
        if self.dpo_completion_tokens and self.method != "dpo":
            raise ValueError("dpo_completion_tokens cuts DPO's chosen/rejected answers; it needs method 'dpo'")
        if self.keep_best and self.schedule() == "no":
            raise ValueError("keep_best needs evaluation during training (eval_strategy 'epoch', or eval_steps)")
        generated = {"eval_rougeL": self.eval_generate > 0, "eval_bertscore_f1": self.eval_generate > 0 and self.eval_bertscore}
        if self.keep_best and not generated.get(self.best_metric, True):
            also = " and eval_bertscore" if "bert" in self.best_metric else ""
            raise ValueError(f"best_metric {self.best_metric} needs eval_generate > 0{also}")
        return self

    def schedule(self) -> str:
        """The resolved evaluation schedule: 'no', 'steps' or 'epoch'."""
        if self.eval_strategy == "auto":
            return "steps" if self.eval_steps else "no"
        return self.eval_strategy
