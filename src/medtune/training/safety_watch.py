"""Model-alone safety while training (``eval.safety_during_training: N``).

Fine-tuning erodes refusals, and guardrails hide that: an exported model runs without them. A
``TrainerCallback`` answers the first N prompts of each safety-suite category with the model alone
(``Responder`` with the guardrails off, greedy, answers capped at ``eval.max_new_tokens``) and scores
them (``evaluate.safety.score_answer``):

* before the first step, with the adapter switched off: the base (for a stage that continues an
  adapter, the base model under it);
* at every evaluation (``train.eval_steps``) and once more at the end of training.

Each score is logged; one below the base is a warning, and everything goes to
``logs/safety_during_training.json`` (``{"per_category", "base", "points": [{step, pass_rate, categories}],
"flagged"}``), which the manifest and the evaluation report pick up. (Imported by the train stage only,
so transformers is loaded here at import.)
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

from transformers import TrainerCallback

from medtune.core.atomic import write_json
from medtune.core.config import RunConfig
from medtune.core.rundir import RunDir
from medtune.evaluate.safety import DURING_TRAINING_FILE as FILE

log = logging.getLogger(__name__)


def safety_callbacks(cfg: RunConfig, run: RunDir, tokenizer) -> list:
    """``[SafetyWatch]`` when ``eval.safety_during_training`` is set, else ``[]``."""
    if not cfg.eval.safety_during_training:
        return []
    return [SafetyWatch(cfg, run, tokenizer)]


def model_alone_score(model, tokenizer, cfg: RunConfig, items: list[dict]) -> dict:
    """``{"pass_rate", "categories": {cat: pass_rate}}`` of ``model`` with no guardrails on ``items``."""
    from medtune.evaluate.safety import run_safety_suite
    from medtune.inference.generator import Generator

    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    try:
        generator = Generator(model, tokenizer, cfg.data.template, cfg.data.system_prompt)
        capped = cfg.model_copy(update={"generation": cfg.generation.model_copy(update={"max_new_tokens": cfg.eval.max_new_tokens,
                                                                                        "temperature": 0.0})})
        result = run_safety_suite(generator, capped, items, guardrails=False)
    finally:
        model.train(was_training)
        tokenizer.padding_side = side  # the generator pads on the left; the trainer's collator expects its own side
    return {"pass_rate": result["pass_rate"], "categories": {c: s["pass_rate"] for c, s in result["categories"].items()}}


class SafetyWatch(TrainerCallback):
    """Scores model-alone safety at the start, at each evaluation and at the end (see the module docstring)."""

    def __init__(self, cfg: RunConfig, run: RunDir, tokenizer):
        from medtune.evaluate.safety import load_suite

        self.cfg, self.run, self.tokenizer = cfg, run, tokenizer
        self.items = load_suite(per_category=cfg.eval.safety_during_training)
        self.record: dict = {"per_category": cfg.eval.safety_during_training, "n": len(self.items), "base": None, "points": [],
                             "flagged": False}

    def _score(self, model, step: int) -> None:
        score = model_alone_score(model, self.tokenizer, self.cfg, self.items)
        base = self.record["base"]
        below = base is not None and score["pass_rate"] < base["pass_rate"]
        self.record["points"].append({"step": step, **score, "below_base": below})
        self.record["flagged"] = self.record["flagged"] or below
        if below:
            log.warning("model-alone safety at step %d is below the base: %.0f%% < %.0f%% (%s)", step, 100 * score["pass_rate"],
                        100 * base["pass_rate"], _worse(score, base))
        else:
            log.info("model-alone safety at step %d: %.0f%% of %d prompts", step, 100 * score["pass_rate"], len(self.items))
        self._write()

    def _write(self) -> None:
        self.run.logs.mkdir(parents=True, exist_ok=True)
        write_json(self.run.logs / FILE, self.record, indent=1)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or self.record["base"] is not None:
            return
        off = getattr(model, "disable_adapter", None)
        with (off() if off is not None else nullcontext()):
            self.record["base"] = model_alone_score(model, self.tokenizer, self.cfg, self.items)
        log.info("model-alone safety of the base: %.0f%% of %d prompts", 100 * self.record["base"]["pass_rate"], len(self.items))
        self._write()

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            self._score(model, state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        done = {p["step"] for p in self.record["points"]}
        if state.is_world_process_zero and state.global_step not in done:
            self._score(model, state.global_step)


def _worse(score: dict, base: dict) -> str:
    worse = [f"{c} {100 * v:.0f}% < {100 * base['categories'].get(c, 0):.0f}%"
             for c, v in score["categories"].items() if v < base["categories"].get(c, 0)]
    return ", ".join(worse) or "overall"

