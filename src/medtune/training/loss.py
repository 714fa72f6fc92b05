"""Chunked cross-entropy on the label positions only: the LM head without the ``[batch, seq, vocab]`` logits.

TRL's trainers (SFT, DPO, ...) ask the model for per-token log-probabilities with
``model(**inputs, labels=labels, fused_lm_head=True)`` and build their losses from them; TRL
answers that call with its own fused head (``trl.trainer.utils.add_fused_lm_head``). On a CPU that
head scores *every* position — prompt and padding included — in ``[4096, 32768]`` float32 tiles
(~0.5 GB each, several temporaries per tile) and always computes the entropy, then recomputes every
tile in the backward pass.

``add_chunked_head`` answers the same call, with the same output type, differently:

* only the positions whose next-token label is not ``-100`` (the completion tokens, as the
  collator's masking configured them) are gathered from the last hidden states;
* they go through the LM head in chunks of ``CHUNK_ROWS`` rows, so at most one
  ``[CHUNK_ROWS, vocab]`` float32 buffer exists at a time, worked on in place;
* while a chunk's logits are there, the gradient of each row's log-probability with respect to
  its hidden state, ``(onehot - softmax) @ W``, is computed too (``[rows, hidden]``, small), so the
  backward pass is one multiply by the incoming gradient instead of a second pass over the
  vocabulary; this holds for any loss built from the per-token log-probabilities (SFT's mean, DPO's
  per-sequence sums), since each row's log-probability depends on its own hidden state only;
* entropy (a logging metric) is computed only when asked for.

The loss the trainer builds from these log-probabilities — its normalisation by the number of
completion tokens, across gradient-accumulation steps and processes — is TRL's own and unchanged.
Calls without ``fused_lm_head=True`` (generation, plain forward) go to the model's forward as before.
"""

from __future__ import annotations

import functools
import logging
import types

import torch

log = logging.getLogger(__name__)

CHUNK_ROWS = 512
"""Label positions projected through the LM head at once: 512 x 49152 float32 logits = 96 MiB."""


class LabelLogProbs(torch.autograd.Function):
    """Log-probability of ``targets`` under ``softmax(hidden @ weight.T + bias)``, row by row, in chunks.

    Returns ``(log_probs [N], is_top1 [N], entropy [N] or None)``, float32. The gradient with respect to
    ``hidden`` is computed in the forward pass (see the module docstring); a trainable ``weight`` or
    ``bias`` (an adapted LM head) gets its gradient from a second pass in ``backward``."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_rows: int, with_entropy: bool):
        ctx.set_materialize_grads(False)
        n = hidden.shape[0]
        want_hidden_grad = ctx.needs_input_grad[0]
        log_probs = hidden.new_empty(n, dtype=torch.float32)
        is_top1 = torch.empty(n, dtype=torch.bool, device=hidden.device)
        entropy = hidden.new_empty(n, dtype=torch.float32) if with_entropy else None
        hidden_grad = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if want_hidden_grad else None
        log_z = hidden.new_empty(n, dtype=torch.float32)
        for start in range(0, n, chunk_rows):
            rows = slice(start, min(start + chunk_rows, n))
            target = targets[rows].unsqueeze(-1)
            z = _logits(hidden[rows], weight, bias)  # [rows, vocab] float32, the only big buffer
            top = z.max(-1)
            is_top1[rows] = top.indices == targets[rows]
            target_z = z.gather(-1, target).squeeze(-1)
            z.sub_(top.values.unsqueeze(-1))  # z - max
            if with_entropy:  # H = log s - sum(e * (z - max)) / s, with e = exp(z - max), s = sum(e)
                shifted = z.clone()
            z.exp_()
            sum_exp = z.sum(-1)
            log_z[rows] = top.values + sum_exp.log()
            log_probs[rows] = target_z - log_z[rows]
            if with_entropy:
                dot = torch.bmm(z.unsqueeze(1), shifted.unsqueeze(2)).view(-1)
                entropy[rows] = sum_exp.log() - dot / sum_exp
                del shifted
            if want_hidden_grad:  # d log p_target / d hidden = (onehot - softmax) @ W
                z.div_(sum_exp.unsqueeze(-1)).neg_()
                z.scatter_add_(-1, target, torch.ones_like(target, dtype=z.dtype))
                torch.mm(z, weight.to(z.dtype), out=hidden_grad[rows])
        ctx.save_for_backward(hidden, weight, bias, targets, log_z, hidden_grad)
        ctx.chunk_rows = chunk_rows
        ctx.mark_non_differentiable(is_top1)
        if entropy is not None:
            ctx.mark_non_differentiable(entropy)
        return log_probs, is_top1, entropy

    @staticmethod
    def backward(ctx, grad_log_probs, *_):
        hidden, weight, bias, targets, log_z, hidden_grad = ctx.saved_tensors
        if grad_log_probs is None:
            return None, None, None, None, None, None
        g = grad_log_probs.float()
        grad_hidden = (hidden_grad * g.unsqueeze(-1)).to(hidden.dtype) if ctx.needs_input_grad[0] else None
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1] or (bias is not None and ctx.needs_input_grad[2]):
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if bias is not None else None
            for start in range(0, hidden.shape[0], ctx.chunk_rows):
                rows = slice(start, min(start + ctx.chunk_rows, hidden.shape[0]))
                z = _logits(hidden[rows], weight, bias)
                z.sub_(log_z[rows].unsqueeze(-1)).exp_().neg_()  # -softmax
                z.scatter_add_(-1, targets[rows].unsqueeze(-1), torch.ones_like(z[:, :1]))  # onehot - softmax
                z.mul_(g[rows].unsqueeze(-1))
                grad_weight.addmm_(z.t(), hidden[rows].float())
                if grad_bias is not None:
                    grad_bias += z.sum(0)
            grad_weight = grad_weight.to(weight.dtype) if ctx.needs_input_grad[1] else None
            grad_bias = grad_bias.to(bias.dtype) if grad_bias is not None and ctx.needs_input_grad[2] else None
        return grad_hidden, grad_weight, grad_bias, None, None, None


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """One chunk's logits as a fresh float32 tensor (the matmul runs in the weight's dtype)."""
    z = torch.nn.functional.linear(hidden.to(weight.dtype), weight, bias)
    return z.float() if z.dtype != torch.float32 else z


def label_log_probs(hidden_states, weight, bias, labels, chunk_rows: int = CHUNK_ROWS, with_entropy: bool = False):
    """Per-position outputs of the LM head for next-token ``labels`` (already shifted: ``labels[i]`` is the
    token after position ``i``), dense ``[batch, seq]`` and zero where the label is ``-100``:
    ``(log_probs, is_top1, entropy or None, mask)``. Only the labelled positions are projected."""
    mask = labels != -100
    rows = hidden_states[mask]
    log_probs, is_top1, entropy = LabelLogProbs.apply(rows, weight, bias, labels[mask], chunk_rows, with_entropy)

    def dense(values):  # masked_scatter keeps an all-masked batch connected to the graph (a zero loss, not an error)
        return None if values is None else values.new_zeros(mask.shape).masked_scatter(mask, values)

    return dense(log_probs), dense(is_top1), dense(entropy), mask


def supports(model) -> bool:
    """The chunked head reproduces ``lm_head(hidden)`` exactly only for models that do no more than that to
    their logits (Llama, SmolLM, Qwen, Mistral, ...); others keep TRL's head."""
    config = model.config.get_text_config()
    scaled = any(getattr(config, key, None) not in (None, 1.0) for key in
                 ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"))
    return not scaled and model.config is config


def add_chunked_head(model, with_entropy: bool = False) -> bool:
    """Answer ``model(..., labels=..., fused_lm_head=True)`` with the chunked head (see the module docstring).

    ``model`` is the transformers model under PEFT (``peft_model.get_base_model()``), patched after the
    TRL trainer has added its own head, which stays the fallback for everything else. Returns whether
    the head was added (False for models ``supports`` refuses)."""
    if not supports(model):
        log.info("%s scales or caps its logits; keeping TRL's LM head", type(model).__name__)
        return False
    from trl.trainer.utils import FusedCausalLMOutput

    previous_forward = model.forward

    @functools.wraps(type(model).forward)  # generate() validates its kwargs against the signature
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or kwargs.get("output_router_logits"):  # MoE aux loss: TRL's head knows it
            passed = {"fused_lm_head": fused_lm_head or None, "labels": labels, "shift_labels": shift_labels,
                      "num_items_in_batch": num_items_in_batch}
            return previous_forward(*args, **{k: v for k, v in passed.items() if v is not None}, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, shift_labels = hidden[:, :-1], labels[:, 1:]
        head = self.get_output_embeddings()
        log_probs, is_top1, entropy, mask = label_log_probs(
            hidden.to(head.weight.device), head.weight, head.bias, shift_labels.to(head.weight.device),
            with_entropy=with_entropy)
        if not with_entropy:  # TRL's SFT trainer logs the entropy; medtune's trainer drops that metric
            entropy = torch.zeros_like(log_probs)
        with torch.no_grad():  # DPO logs the mean logit: the mean over the vocabulary is one product with the mean row
            mean_logits = hidden.to(head.weight.device) @ head.weight.mean(0).to(hidden.dtype)
            if head.bias is not None:
                mean_logits += head.bias.mean()
            mean_logits = mean_logits * mask
        denominator = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / denominator, log_probs=log_probs, entropy=entropy,
                                   is_top1=is_top1, label_mask=mask, mean_logits=mean_logits)

    model.forward = types.MethodType(forward, model)
    return True


class ChunkedHeadMixin:
    """Put before a TRL trainer class (``class T(ChunkedHeadMixin, trl.SFTTrainer)``, or ``trl.DPOTrainer``):
    the trainer's model gets the chunked head once the trainer has built it, and the entropy metric,
    which the chunked head does not compute, is not logged."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        self.chunked_head = add_chunked_head(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if self.chunked_head:  # TRL's metrics are private; without this the log would show an entropy of 0
            self._metrics["train" if self.model.training else "eval"].pop("entropy", None)
        return result

