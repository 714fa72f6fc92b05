"""The chunked LM head (``train.loss: chunked``, ``training.loss``) against TRL's own head (``plain``):
the same loss and gradients on the same batch — padded or packed, LoRA or QLoRA, with a gradient-
accumulation normaliser — on the tiny random model, once on the real built-in model, and a short
run whose loss falls."""

import pytest
import torch
import trl

from medtune.core.config import load_config
from medtune.core.models import load_model, load_tokenizer
from medtune.core.rundir import RunDir
from medtune.data.records import Record
from medtune.data.templates import examples_dataset
from medtune.training.checkpoints import trainer_class
from medtune.training.loss import LabelLogProbs
from medtune.training.train import keep_adapter_fp32, peft_config, sft_config

QA = [
    ("What is a fever?", "A fever is a body temperature above the normal range, usually above 38 C."),
    ("How do I treat a minor burn?", "Cool the burn under running water for twenty minutes, then cover it loosely."),
    ("Is ibuprofen safe with asthma?", "Some people with asthma react to ibuprofen; ask a pharmacist first."),
    ("When should I worry about a headache?", "Get urgent help for a sudden, severe headache or one with a stiff neck."),
]


def make_trainer(tmp_path, model_dir, loss: str, packing=False, quantization="none", layers=None, overrides=()):
    cfg = load_config(None, [f"output_dir={tmp_path}", f"name={loss}{int(packing)}{quantization}", f"model.quantization={quantization}",
                             "lora.dropout=0", f"lora.layers={layers or 'null'}",
                             "data.system_prompt=You are a careful medical assistant.",
                             f"train.packing={packing}", "train.batch_size=4", "train.max_seq_length=160", "train.report_to=[]",
                             *overrides])
    torch.manual_seed(0)
    model = load_model(str(model_dir), quantization, "float32")
    records = [Record(id=str(i), question=q, answer=a, source="test") for i, (q, a) in enumerate(QA)]
    cls = trainer_class(trl.SFTTrainer, chunked_head=loss == "chunked")
    trainer = cls(model=model, args=sft_config(cfg, RunDir.create(cfg), False), processing_class=load_tokenizer(str(model_dir)),
               train_dataset=examples_dataset(records, cfg.data.template, cfg.data.system_prompt), peft_config=peft_config(cfg, model))
    keep_adapter_fp32(trainer.model)  # as train() does (TRL casts QLoRA adapters to bf16)
    return trainer


def loss_and_grads(trainer, num_items_in_batch=None):
    """One micro-batch of the whole (tiny) training set through the trainer's own compute_loss, as in a step."""
    trainer.model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=num_items_in_batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    accuracy = trainer._metrics["train"]["mean_token_accuracy"][-1]
    return loss.item(), grads, accuracy, batch


def assert_same(tmp_path, model_dir, **kw):
    plain, chunked = make_trainer(tmp_path, model_dir, "plain", **kw), make_trainer(tmp_path, model_dir, "chunked", **kw)
    for (name, p), (_, c) in zip(plain.model.named_parameters(), chunked.model.named_parameters(), strict=True):
        assert torch.equal(p, c), f"both trainers must start from the same adapter: {name}"
    labelled = int((plain.data_collator([plain.train_dataset[0]])["labels"] != -100).sum())
    # a normaliser larger than this batch's own count: the batch is one of several accumulated micro-batches
    for num_items in (None, torch.tensor(3 * labelled)):
        want, want_grads, want_acc, batch = loss_and_grads(plain, num_items)
        got, got_grads, got_acc, _ = loss_and_grads(chunked, num_items)
        assert abs(got - want) < 1e-4, (got, want)
        assert abs(got_acc - want_acc) < 1e-6
        scale = max(g.abs().max().item() for g in want_grads.values())
        for name, g in want_grads.items():
            torch.testing.assert_close(got_grads[name], g, atol=1e-5 * max(scale, 1.0), rtol=1e-3, msg=lambda m, name=name: f"{name}: {m}")
    assert "entropy" not in chunked._metrics["train"], "the chunked head does not compute the entropy metric"
    return batch


@pytest.mark.parametrize(("packing", "quantization"), [(False, "none"), (True, "none"), (False, "4bit")])
def test_chunked_loss_and_gradients_equal_plain(tmp_path, tiny_model_dir, packing, quantization):
    batch = assert_same(tmp_path, tiny_model_dir, packing=packing, quantization=quantization)
    labels = batch["labels"]
    assert (labels == -100).any() and (labels != -100).any(), "prompt positions masked, answers scored"
    assert ("attention_mask" not in batch) == packing


def test_chunked_loss_equals_plain_on_the_builtin_model(tmp_path, base_model_dir):
    assert_same(tmp_path, base_model_dir, layers=[28, 29], overrides=["train.max_seq_length=48"])


def test_label_log_probs_match_log_softmax_with_head_gradients():
    """The autograd function alone, chunked in 3-row pieces, against log_softmax: values, top-1, entropy,
    and gradients for hidden states, an adapted head weight and a bias, under a non-uniform upstream gradient."""
    torch.manual_seed(0)
    hidden = torch.randn(7, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(50, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (7,))
    upstream = torch.randn(7, dtype=torch.float64)
    log_probs, is_top1, entropy = LabelLogProbs.apply(hidden, weight, bias, targets, 3, True)
    (log_probs.double() * upstream).sum().backward()
    got = [hidden.grad.clone(), weight.grad.clone(), bias.grad.clone()]
    hidden.grad = weight.grad = bias.grad = None
    ref = torch.log_softmax(hidden @ weight.T + bias, -1)
    want = ref.gather(-1, targets[:, None]).squeeze(-1)
    (want * upstream).sum().backward()
    torch.testing.assert_close(log_probs.double(), want.detach(), atol=1e-5, rtol=0)
    assert torch.equal(is_top1, ref.argmax(-1) == targets)
    torch.testing.assert_close(entropy.double(), -(ref.exp() * ref).sum(-1).detach(), atol=1e-5, rtol=0)
    for g, w in zip(got, [hidden.grad, weight.grad, bias.grad], strict=True):
        torch.testing.assert_close(g.double(), w, atol=1e-5, rtol=1e-4)


def test_training_with_the_chunked_loss_lowers_the_loss(tmp_path, tiny_model_dir):
    trainer = make_trainer(tmp_path, tiny_model_dir, "chunked",
                           overrides=["train.max_steps=8", "train.learning_rate=5e-3", "train.logging_steps=1",
                                      "train.lr_scheduler=constant"])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_micro_batches_train_the_same_step_as_one_batch(tmp_path, tiny_model_dir, quantization):
    """``batch_size: 1, grad_accum: 4`` (what docs/training-speed.md advises on a CPU) makes the same optimizer step
    as one batch of 4: plain SGD, so the update is the gradient itself (Adam's first step would hide its scale)."""
    def step(batch: int, accum: int) -> dict:
        trainer = make_trainer(tmp_path / f"{batch}x{accum}", tiny_model_dir, "chunked", quantization=quantization, overrides=[
            f"train.batch_size={batch}", f"train.grad_accum={accum}", "train.max_steps=1", "train.optim=sgd",
            "train.learning_rate=1.0", "train.lr_scheduler=constant", "train.logging_steps=1"])
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        trainer.train()
        loss = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
        return {"loss": loss, **{n: p.detach() - before[n] for n, p in trainer.model.named_parameters() if p.requires_grad}}

    whole, micro = step(4, 1), step(1, 4)
    assert abs(whole.pop("loss") - micro.pop("loss")) < 1e-4
    assert any(d.abs().max() > 1e-4 for d in whole.values()), "the step moved the adapter"
    for name, d in whole.items():
        torch.testing.assert_close(micro[name], d, atol=1e-6, rtol=1e-3, msg=lambda m, name=name: f"{name}: {m}")
