"""Preference tuning (``train.method: dpo``): TRL's DPOTrainer on a LoRA/QLoRA adapter.

Each example is a prompt with a chosen and a rejected answer (``data.templates.to_preference_example``,
the same chat template and system prompt as SFT). DPO raises the policy's log-probability margin of
chosen over rejected *relative to a reference model*, with ``train.dpo_beta`` holding it near that
reference. The reference is the model as training starts, and costs no second copy in memory:

* a fresh adapter: the base model itself (TRL runs the reference pass with the adapter switched off);
* a stage after SFT (``lora.init_adapter``, ``stages: [..., {name: dpo, method: dpo}]``): TRL copies the
  SFT adapter into a frozen ``ref`` adapter, so DPO moves away from the SFT model, not from the base.

The run directory, checkpoints, ``--resume``, history and manifest are the SFT ones (``train.train``), and so
is ``train.loss: chunked``: TRL's DPOTrainer asks for per-token log-probs with the same ``fused_lm_head`` call
(policy and reference passes), which the chunked head answers on the answer tokens only.
"""

from __future__ import annotations

import logging

from medtune.core.config import RunConfig
from medtune.core.rundir import RunDir
from medtune.data.templates import preference_dataset

log = logging.getLogger(__name__)
REFERENCE_ADAPTER = "ref"
"""The frozen copy TRL makes of a starting adapter (see the module docstring)."""


def dpo_config(cfg: RunConfig, run: RunDir, has_eval: bool):
    from trl import DPOConfig

    from medtune.training.train import common_args

    t = cfg.train
    losses, weights = [t.dpo_loss], None
    if t.dpo_sft_weight > 0:  # TRL sums the loss types with these weights
        losses, weights = [t.dpo_loss, "sft"], [1.0, t.dpo_sft_weight]
    return DPOConfig(**common_args(cfg, run, has_eval), beta=t.dpo_beta, loss_type=losses, loss_weights=weights)


def dpo_trainer(cfg: RunConfig, run: RunDir, model, tokenizer, lora, train_records, eval_records, callbacks):
    """``(DPOTrainer, training dataset)``; every training record must carry a rejected answer."""
    from trl import DPOTrainer

    from medtune.training.checkpoints import trainer_class

    train_ds = preference_dataset(train_records, cfg.data.template, cfg.data.system_prompt)
    eval_pairs = [r for r in eval_records if r.rejected]
    eval_ds = preference_dataset(eval_pairs, cfg.data.template, cfg.data.system_prompt) if eval_pairs else None
    cls = trainer_class(DPOTrainer, chunked_head=cfg.train.loss == "chunked")  # DPO's log-probs through the chunked head too
    trainer = cls(model=model, args=dpo_config(cfg, run, eval_ds is not None), train_dataset=train_ds,
                  eval_dataset=eval_ds, processing_class=tokenizer, peft_config=lora, callbacks=callbacks)
    if not cfg.train.dpo_rejected_end_of_turn:
        end = end_of_turn_ids(tokenizer, cfg.data.template)
        _remap(trainer, lambda ds, name: open_rejected(ds, end, name))
    if cfg.train.dpo_completion_tokens:
        _remap(trainer, lambda ds, name: cut_completions(ds, cfg.train.dpo_completion_tokens, name))
    return trainer, train_ds


def _remap(trainer, fn) -> None:
    """Replace the trainer's tokenized training pairs, and its held-out pairs if any, with ``fn(dataset, name)``."""
    trainer.train_dataset = fn(trainer.train_dataset, "training")
    if trainer.eval_dataset is not None:
        trainer.eval_dataset = fn(trainer.eval_dataset, "held-out")


def end_of_turn_ids(tokenizer, template: str) -> list[int]:
    """The tokens that close an answer in TRL's tokenized pairs: for a chat template, what the template writes after an
    assistant message ("<|im_end|>\\n" for ChatML); for the alpaca template, the EOS token TRL appends."""
    if template == "alpaca" or not getattr(tokenizer, "chat_template", None):
        return [tokenizer.eos_token_id]
    marker = "MEDTUNE_ANSWER_END"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}],
                                         tokenize=False)
    return tokenizer(text[text.rindex(marker) + len(marker):], add_special_tokens=False)["input_ids"]


def open_rejected(dataset, end: list[int], name: str):
    """TRL's tokenized pairs with each rejected answer's closing ``end`` tokens taken off (``train.dpo_rejected_end_of_turn``
    off): the preference is about what a rejected answer says; its end of turn would be pushed down as well, and a
    tuned model learned to go on after its own fixed replies (docs/safety.md, recipe W). A rejected answer that does
    not end on ``end`` is left as it is, counted and logged."""
    n = len(end)
    if not n:
        return dataset
    opened = dataset.map(lambda e: {"rejected_ids": e["rejected_ids"][:-n] if e["rejected_ids"][-n:] == end
                                    and len(e["rejected_ids"]) > n else e["rejected_ids"]})
    kept = sum(len(a) == len(b) for a, b in zip(opened["rejected_ids"], dataset["rejected_ids"], strict=True))
    log.info("DPO %s pairs: rejected answers scored without their end of turn", name)
    if kept:
        log.warning("%d of %d DPO %s rejected answers do not end on the end-of-turn tokens %s and keep their ending",
                    kept, len(opened), name, end)
    return opened


def cut_completions(dataset, tokens: int, name: str):
    """TRL's tokenized pairs with chosen and rejected cut to their first ``tokens`` tokens (``train.dpo_completion_tokens``).

    The cut is in token space, after TRL tokenized the chat, so no end-of-turn is added after a cut answer. Pairs
    whose two answers open with the same ``tokens`` tokens carry no preference any more; they are counted and logged.
    """
    cut = dataset.map(lambda e: {"chosen_ids": e["chosen_ids"][:tokens], "rejected_ids": e["rejected_ids"][:tokens]})
    same = sum(c == r for c, r in zip(cut["chosen_ids"], cut["rejected_ids"], strict=True))
    log.info("DPO %s pairs: answers cut to their first %d tokens", name, tokens)
    if same:
        log.warning("%d of %d DPO %s pairs open with the same %d tokens and carry no preference (raise "
                    "train.dpo_completion_tokens)", same, len(cut), name, tokens)
    return cut


def drop_reference(model) -> None:
    """Remove TRL's frozen ``ref`` adapter before saving, so ``adapter/`` holds only the trained one."""
    peft_config = getattr(model, "peft_config", {})
    if REFERENCE_ADAPTER in peft_config:
        model.delete_adapter(REFERENCE_ADAPTER)
        model.set_adapter("default")
