"""Packing (train.packing): TRL packs examples into rows (best-fit decreasing) and the collator
flattens a batch into one padding-free sequence with per-example position_ids; transformers turns
those into a block-diagonal causal mask for sdpa/eager attention. Each example's loss must be what
it is alone: no attention across example boundaries. The attention code is what is tested, not the
weights, so the model is the tiny random one (``tiny_model_dir``)."""

import torch

from medtune.core.config import load_config
from medtune.core.rundir import RunDir
from medtune.data.records import Record
from medtune.data.templates import examples_dataset
from medtune.training.train import examples_in, peft_config, sft_config

QA = [
    ("What is a fever?", "A fever is a body temperature above the normal range, usually above 38 C."),
    ("How do I treat a minor burn?",
     "Cool the burn under cool running water for twenty minutes, then cover it loosely with a clean dressing."),
    ("Is ibuprofen safe with asthma?", "Some people with asthma react to ibuprofen; ask a doctor or pharmacist first."),
    ("When should I worry about a headache?",
     "Get urgent help for a sudden, severe headache, or one with a stiff neck, fever, confusion or weakness."),
]


def trainer_for(tmp_path, model_dir, packing: bool):
    from trl import SFTTrainer

    from medtune.core.models import load_model, load_tokenizer

    cfg = load_config(None, [f"output_dir={tmp_path}", f"name=p{int(packing)}", "model.quantization=none", "lora.dropout=0",
                             "data.system_prompt=You are a careful medical assistant.", f"train.packing={packing}",
                             "train.batch_size=4", "train.max_seq_length=160", "train.report_to=[]"])
    records = [Record(id=str(i), question=q, answer=a, source="test") for i, (q, a) in enumerate(QA)]
    torch.manual_seed(0)
    model = load_model(str(model_dir), dtype="float32")
    dataset = examples_dataset(records, cfg.data.template, cfg.data.system_prompt)
    trainer = SFTTrainer(model=model, args=sft_config(cfg, RunDir.create(cfg), False), train_dataset=dataset,
                         processing_class=load_tokenizer(str(model_dir)), peft_config=peft_config(cfg, model))
    trainer.model.eval()
    return trainer


def segment_losses(logits: torch.Tensor, labels: torch.Tensor, bounds: list[tuple[int, int]]) -> list[float]:
    """Mean next-token loss of each [start, end) segment of one flat row."""
    losses = []
    for s, e in bounds:
        losses.append(torch.nn.functional.cross_entropy(logits[s:e - 1], labels[s + 1:e], ignore_index=-100).item())
    return losses


def test_packed_loss_per_example_equals_unpacked(tmp_path, tiny_model_dir):
    packed = trainer_for(tmp_path, tiny_model_dir, packing=True)
    rows = packed.train_dataset
    assert examples_in(rows) == len(QA) and len(rows) < len(QA), "several examples share a packed row"
    batch = packed.data_collator([rows[i] for i in range(len(rows))])
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1, "padding-free: one flat row, no pad tokens"
    pos = batch["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist() + [pos.numel()]
    bounds = list(zip(starts[:-1], starts[1:], strict=True))
    assert len(bounds) == len(QA)
    with torch.no_grad():
        loss, out = packed.compute_loss(packed.model, dict(batch), return_outputs=True)
        got = segment_losses(out.logits[0].float(), batch["labels"][0], bounds)
        # the same flat row read as one long sequence: later examples see the earlier ones
        leaky = packed.model(input_ids=batch["input_ids"], use_cache=False).logits[0].float()
        leaked = segment_losses(leaky, batch["labels"][0], bounds)

    plain = trainer_for(tmp_path, tiny_model_dir, packing=False)
    alone = {}
    with torch.no_grad():
        for row in plain.train_dataset:
            one = plain.data_collator([row])
            _, o = plain.compute_loss(plain.model, dict(one), return_outputs=True)
            alone[tuple(row["input_ids"])] = segment_losses(o.logits[0].float(), one["labels"][0], [(0, len(row["input_ids"]))])[0]
    ids = batch["input_ids"][0].tolist()
    want = [alone[tuple(ids[s:e])] for s, e in bounds]

    for g, w in zip(got, want, strict=True):
        assert abs(g - w) < 1e-4, (got, want)
    # the control: without the boundaries the loss of every example but the first one changes
    assert max(abs(k - w) for k, w in zip(leaked[1:], want[1:], strict=True)) > 0.05, (leaked, want)
    # the batch loss is the token-weighted mean of the examples' losses
    n = [int((batch["labels"][0][s + 1:e] != -100).sum()) for s, e in bounds]
    assert abs(loss.item() - sum(w * k for w, k in zip(want, n, strict=True)) / sum(n)) < 1e-4
