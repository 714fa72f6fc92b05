"""Turning records into training examples and generation prompts.

Training examples are TRL *prompt–completion* pairs. TRL tokenizes prompt and completion
separately and sets the labels of every prompt token to -100, so the loss is computed on the
assistant's answer only (for a multi-turn record: on its last assistant turn; earlier turns are
context). Three templates:

- ``chat``: the model's own chat template (conversational prompt/completion; TRL applies the
  template). The template closes the assistant turn with the model's end-of-turn token (EOS for
  SmolLM2's ``<|im_end|>``), which is part of the completion, so the tuned model learns to stop.
- ``reasoning``: as ``chat``, with the record's reasoning rendered as ``<think>…</think>``
  before the answer.
- ``alpaca``: plain text ``### System / ### Instruction / ### Response``; TRL appends the
  tokenizer's EOS to the completion.

``prompt_text`` renders the same prompt for generation (eval, ask, chat), so what the model
sees at inference is exactly what it was trained on.
"""

from __future__ import annotations

from medtune.data.records import Record

ALPACA = "### System:\n{system}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


def with_reasoning(answer: str, reasoning: str | None) -> str:
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{answer}" if reasoning else answer


def to_example(record: Record, template: str, system_prompt: str | None) -> dict:
    """One prompt–completion training example."""
    turns = record.dialogue()
    if not turns or turns[-1]["role"] != "assistant":
        raise ValueError(f"record {record.id}: the last turn must be the assistant's")
    context, answer = turns[:-1], turns[-1]["content"]
    if template == "reasoning":
        answer = with_reasoning(answer, record.reasoning)
    if template == "alpaca":
        return {"prompt": alpaca_prompt(context, system_prompt), "completion": answer}
    return {"prompt": system_turn(system_prompt) + context, "completion": [{"role": "assistant", "content": answer}]}


def system_turn(system_prompt: str | None) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_prompt}] if system_prompt else []


def alpaca_prompt(context: list[dict[str, str]], system_prompt: str | None) -> str:
    """Alpaca format for a conversation: earlier turns are folded into the instruction."""
    *earlier, last = context
    history = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in earlier)
    text = ALPACA.format(system=system_prompt or "", instruction=history + last["content"])
    return text if system_prompt else text[text.index("### Instruction:") :]  # no persona: no empty ### System block


def prompt_text(tokenizer, messages: list[dict[str, str]], template: str, system_prompt: str | None) -> str:
    """The generation prompt for a conversation that ends with a user turn."""
    if template == "alpaca":
        return alpaca_prompt(messages, system_prompt)
    msgs = system_turn(system_prompt) + [m for m in messages if m["role"] != "system"]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def examples_dataset(records: list[Record], template: str, system_prompt: str | None):
    """A ``datasets.Dataset`` of prompt–completion examples, as TRL's SFTTrainer takes them."""
    from datasets import Dataset

    return Dataset.from_list([to_example(r, template, system_prompt) for r in records])


def to_preference_example(record: Record, template: str, system_prompt: str | None) -> dict:
    """One TRL preference example: the prompt as in ``to_example``, the chosen answer (the record's last
    turn) and the rejected one (``record.rejected``). DPOTrainer scores both continuations of the same
    prompt; like SFT, only answer tokens count, and the chat template closes each answer with EOS."""
    if not record.rejected:
        raise ValueError(f"record {record.id} ({record.source}): no rejected answer; train.method 'dpo' needs preference "
                         "records (data source kind 'preference', or 'medtune safety-pairs')")
    example = to_example(record, template, system_prompt)
    rejected = record.rejected
    if template == "alpaca":
        return {"prompt": example["prompt"], "chosen": example["completion"], "rejected": rejected}
    return {"prompt": example["prompt"], "chosen": example["completion"], "rejected": [{"role": "assistant", "content": rejected}]}


def preference_dataset(records: list[Record], template: str, system_prompt: str | None):
    """A ``datasets.Dataset`` of prompt/chosen/rejected examples, as TRL's DPOTrainer takes them."""
    from datasets import Dataset

    return Dataset.from_list([to_preference_example(r, template, system_prompt) for r in records])
