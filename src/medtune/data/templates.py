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
- ``rag``: as ``chat``, with numbered passages in the system prompt in the layout grounded answers
  use (``data.grounding``), so a small model learns to answer from them and cite them (``rag_example``).

``prompt_text`` renders the same prompt for generation (eval, ask, chat), so what the model
sees at inference is exactly what it was trained on.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence

from medtune.core.config import DataConfig
from medtune.data.grounding import NOT_FOUND, grounded_system
from medtune.data.records import Record

ALPACA = "### System:\n{system}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


def with_reasoning(answer: str, reasoning: str | None) -> str:
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{answer}" if reasoning else answer


def to_example(record: Record, template: str, system_prompt: str | None, pool: Sequence[Record] = (),
               not_found_share: float | None = None) -> dict:
    """One prompt–completion training example (``pool``: the records that give the rag template its distractors;
    ``not_found_share``: its share of distractor-only examples, ``RAG_NOT_FOUND_SHARE`` when None)."""
    if template == "rag":
        return rag_example(record, system_prompt, pool, not_found_share)
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


def examples_dataset(records: list[Record], template: str, system_prompt: str | None, not_found_share: float | None = None):
    """A ``datasets.Dataset`` of prompt–completion examples, as TRL's SFTTrainer takes them."""
    from datasets import Dataset

    return Dataset.from_list([to_example(r, template, system_prompt, records, not_found_share) for r in records])


def data_examples(records: list[Record], data: DataConfig):
    """``examples_dataset`` as a run's data section says: its template, system prompt and rag not-found share."""
    return examples_dataset(records, data.template, data.system_prompt, data.rag_not_found_share)


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


RAG_PASSAGES = 3
"""Passages in a rag prompt (``retrieval.k``'s default): the gold one(s) and distractors."""
RAG_NOT_FOUND_SHARE: float = DataConfig.model_fields["rag_not_found_share"].default
"""Share of rag examples with distractors only, whose target is the not-found sentence (``data.rag_not_found_share``'s default)."""
RAG_SPLIT_SHARE = 0.5
"""Share of the other examples whose gold text comes as two passages, as an index cuts a long answer."""
RAG_PASSAGE_WORDS = 120
"""A record's answer is cut to its first sentences within this many words to make its gold text (about the index's passage size)."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def rag_example(record: Record, system_prompt: str | None, pool: Sequence[Record] = (), not_found_share: float | None = None) -> dict:
    """A grounded training example: the record's own text among distractors, or distractors only.

    The gold text is the record's answer cut to whole sentences within ``RAG_PASSAGE_WORDS``
    (``meta["passage"]`` when a record carries its own context). In ``RAG_SPLIT_SHARE`` of the examples it
    comes as two passages of one document, as an index returns the consecutive passages of a long answer.
    The passages are shuffled and the target is the gold sentences in their order, each citing the passage
    it comes from (``cite_sentences``), so the model learns to cite the number that holds the sentence, not
    the first one. Distractors are the passages of other records with another title. In
    ``not_found_share`` (``RAG_NOT_FOUND_SHARE``) of the examples the gold text is left out and the target is ``NOT_FOUND``.
    Choices are seeded by the record id, so the same records always give the same examples.
    """
    rng = random.Random(int(hashlib.sha256(record.id.encode()).hexdigest()[:16], 16))
    gold = rag_passage(record)
    distractors: list[dict] = []
    for r in rng.sample(list(pool), min(len(pool), 4 * RAG_PASSAGES)):  # a few candidates; another title each
        if len(distractors) < RAG_PASSAGES - 1 and r.id != record.id:
            passage = rag_passage(r)
            if passage["title"] != gold["title"] and passage["title"] not in (d["title"] for d in distractors):
                distractors.append(passage)
    share = RAG_NOT_FOUND_SHARE if not_found_share is None else not_found_share
    if distractors and rng.random() < share:
        passages, answer = distractors, NOT_FOUND
    else:
        sentences = _SENTENCE_END.split(gold["text"])
        if len(sentences) > 1 and distractors and rng.random() < RAG_SPLIT_SHARE:
            cut = _half(sentences)
            chunks = [sentences[:cut], sentences[cut:]]
            distractors = distractors[: RAG_PASSAGES - 2]
        else:
            chunks = [sentences]
        golds = [{**gold, "text": " ".join(chunk)} for chunk in chunks]
        passages = [*golds, *distractors]
        rng.shuffle(passages)
        answer = " ".join(cite_sentences(g["text"], next(i for i, p in enumerate(passages, 1) if p is g)) for g in golds)
    prompt = [{"role": "system", "content": grounded_system(passages, system_prompt)}, {"role": "user", "content": record.question}]
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}


def _half(sentences: list[str]) -> int:
    """Where to cut sentences into two runs of about equal words (at least one sentence each)."""
    total, words = sum(len(s.split()) for s in sentences), 0
    for i, sentence in enumerate(sentences[:-1], start=1):
        words += len(sentence.split())
        if words >= total / 2:
            return i
    return len(sentences) - 1


def cite_sentences(text: str, number: int) -> str:
    """``text`` with the citation ``[number]`` on every sentence, before its final stop ("… is treated [2].").

    Every sentence, not only the last: an answer cut short by ``max_new_tokens`` still cites, and each
    sentence the citation check reads (``retrieval.cite``) carries its own source."""
    cited = []
    for sentence in _SENTENCE_END.split(text.strip()):
        body = sentence.rstrip()
        stop = body[-1] if body and body[-1] in ".!?" else ""
        cited.append(f"{body[: len(body) - len(stop)].rstrip()} [{number}]{stop or '.'}")
    return " ".join(cited)


def rag_passage(record: Record) -> dict:
    """``{title, text, url}`` of a record as a passage (see ``rag_example``)."""
    text = record.meta.get("passage") or record.answer
    kept, words = [], 0
    for sentence in _SENTENCE_END.split(text.strip()):
        n = len(sentence.split())
        if kept and words + n > RAG_PASSAGE_WORDS:
            break
        kept.append(sentence)
        words += n
    title = record.meta.get("focus") or record.meta.get("focus_area") or record.meta.get("title") or record.source
    return {"title": title, "text": " ".join(kept), "url": record.meta.get("url")}
