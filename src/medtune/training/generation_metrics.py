"""Generation metrics during training: answers to a fixed sample of held-out questions at every evaluation.

Eval loss can fall while the answers get worse (a model that learns a corpus's templates lowers its
loss on the templated references). ``GenerationMetrics`` is a ``TrainerCallback``: at each evaluation
it answers the first ``train.eval_generate`` held-out questions greedily (``train.eval_generate_tokens``
new tokens, the run's template and system prompt, through ``inference.Generator``), scores them
against the references and

* adds ``eval_rougeL`` (and ``eval_bertscore_f1`` with ``train.eval_bertscore``) to the evaluation's
  metrics, so ``train.best_metric: eval_rougeL`` picks the checkpoint ``keep_best`` keeps;
* logs them through the trainer (``history.json``, TensorBoard's ``eval/rougeL``, the curves plot).
"""

from __future__ import annotations

import logging
import statistics

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class GenerationMetrics(TrainerCallback):
    def __init__(self, trainer, records, cfg):
        from medtune.inference.generator import Generator

        self.trainer = trainer
        self.conversations = [r.dialogue()[:-1] for r in records]
        self.references = [r.dialogue()[-1]["content"] for r in records]
        self.cfg = cfg
        self.generator = Generator(trainer.model, trainer.processing_class, cfg.data.template, cfg.data.system_prompt)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        scores = self.score(self.answers())
        if metrics is not None:
            metrics.update(scores)  # the dict the trainer then checks for the best checkpoint
        log.info("step %d: %s", state.global_step, ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        self.trainer.log(scores)

    def answers(self) -> list[str]:
        from medtune.core.config import GenerationConfig

        model, tokenizer = self.trainer.model, self.generator.tokenizer
        training, side = model.training, tokenizer.padding_side
        greedy = GenerationConfig(temperature=0.0, repetition_penalty=self.cfg.generation.repetition_penalty,
                                  no_repeat_ngram_size=self.cfg.generation.no_repeat_ngram_size, batch_size=self.cfg.train.batch_size)
        model.eval()
        try:
            return self.generator.generate(self.conversations, greedy, max_new_tokens=self.cfg.train.eval_generate_tokens)
        finally:
            model.train(training)
            tokenizer.padding_side = side

    def score(self, answers: list[str]) -> dict[str, float]:
        from medtune.evaluate.metrics import bertscore_items, rouge_items

        scores = {"eval_rougeL": statistics.fmean(r["rougeL"] for r in rouge_items(answers, self.references))}
        if self.cfg.train.eval_bertscore and self.cfg.eval.bertscore_model:
            rows = bertscore_items(answers, self.references, self.cfg.eval.bertscore_model, self.cfg.eval.bertscore_layers)
            scores["eval_bertscore_f1"] = statistics.fmean(r["bertscore_f1"] for r in rows)
        return scores
