"""Eval loss and token accuracy per held-out item, so both get bootstrap intervals.

The items are tokenized and masked by TRL exactly as in training (an ``SFTTrainer`` built only
for its eval dataloader: prompt tokens labelled -100, the answer and its end-of-turn token
scored). Each batch goes through the model once; for every item we keep the summed next-token
loss, the number of answer tokens and how many of them the model's argmax got right. The split's
eval loss is total loss / total answer tokens (a token-weighted mean, where TRL's ``evaluate()``
averages batch means), and perplexity is its exponential.
"""

from __future__ import annotations


def loss_trainer(cfg, run, model, tokenizer, dataset):
    """An SFTTrainer used only for its eval dataloader: the same tokenization and masking as training."""
    import torch
    from trl import SFTConfig, SFTTrainer

    # only what shapes the eval rows matters here: the training length limit and answer-only loss (one row per item, no packing)
    args = SFTConfig(
        output_dir=str(run.eval / "tmp"),
        per_device_eval_batch_size=cfg.train.batch_size,
        max_length=cfg.train.max_seq_length,
        completion_only_loss=True,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=cfg.model.resolved_dtype() == "bfloat16",
        dataloader_num_workers=0,
    )
    # SFTTrainer insists on a train set; it is never trained here
    return SFTTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer)


def item_losses(model, trainer, progress: bool = True) -> list[dict]:
    """``[{"loss_sum", "tokens", "correct"}]`` per eval item, in dataset order."""
    import torch
    from tqdm.auto import tqdm

    rows = []
    loader = trainer.get_eval_dataloader()
    for batch in tqdm(loader, desc="eval loss", disable=not progress, unit="batch"):
        batch = {k: v.to(model.device) for k, v in batch.items() if hasattr(v, "to")}
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
        with torch.inference_mode():
            logits = model(**inputs).logits.float()
        labels = batch["labels"][:, 1:]
        logits = logits[:, :-1]
        mask = labels != -100
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
        correct = (logits.argmax(-1) == labels) & mask
        for i in range(labels.shape[0]):
            rows.append({"loss_sum": float((nll[i] * mask[i]).sum()), "tokens": int(mask[i].sum()), "correct": int(correct[i].sum())})
    return rows
