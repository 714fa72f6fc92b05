"""Preference pairs (DPO): a prompt, a chosen and a rejected answer, in the shapes the community uses.

Every shape becomes one ``Record`` whose dialogue ends with the *chosen* assistant turn
(``answer``) and whose ``rejected`` holds the dispreferred last turn, so cleaning, deduplication,
the split and the data card treat preference data like any other. Shapes (found per row):

* generic JSONL ``{"prompt", "chosen", "rejected"}`` with strings: ``prompt`` may also be a list of
  ``{role, content}`` turns (a conversation ending with the user);
* UltraFeedback-binarized (``HuggingFaceH4/ultrafeedback_binarized``, split ``train_prefs``):
  ``prompt`` a string, ``chosen``/``rejected`` full message lists that repeat the prompt and end
  with the assistant's answer;
* Anthropic HH (``Anthropic/hh-rlhf``): no prompt, ``chosen``/``rejected`` whole dialogues as text
  (``\\n\\nHuman: … \\n\\nAssistant: …``) or as message lists; the shared turns are the prompt and the
  last assistant turns are the pair.

A row whose two answers are the same, or whose answers do not end on an assistant turn, is a
``DataError`` naming file, line and field (or counted, under ``on_error: skip``).
"""

from __future__ import annotations

import re

from medtune.data.errors import DataError, OnError, SkipLog
from medtune.data.records import Record
from medtune.data.sources.generic import read_messages
from medtune.data.sources.rows import collect, source_name

LICENSE = "unknown"
HUB_IDS = ("Anthropic/hh-rlhf", "HuggingFaceH4/ultrafeedback_binarized", "trl-lib/ultrafeedback_binarized")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def load(
    path: str,
    *,
    on_error: OnError = "raise",
    skips: SkipLog | None = None,
    limit: int | None = None,
    split: str = "train",
    config: str | None = None,
    source: str | None = None,
    license: str = LICENSE,
    prompt: str = "prompt",
    chosen: str = "chosen",
    rejected: str = "rejected",
    id: str | None = "id",
) -> list[Record]:
    """Preference records from a file or Hub id (column names as options; shapes in the module docstring)."""
    source = source or source_name(path)

    def to_record(origin: str, line: int, row: dict) -> Record:
        context, good = answer_turns(origin, line, row, chosen, row.get(prompt), prompt)
        other_context, bad = answer_turns(origin, line, row, rejected, row.get(prompt), prompt)
        if other_context != context:
            raise DataError(origin, "chosen and rejected continue different conversations", line=line, field=rejected)
        if good.strip() == bad.strip():
            raise DataError(origin, "chosen and rejected answers are the same", line=line, field=rejected)
        if not any(t["role"] == "user" for t in context):
            raise DataError(origin, "no user turn before the answers", line=line, field=prompt if prompt in row else chosen)
        rid = row.get(id) if id and isinstance(row.get(id), (str, int)) else None
        extra = {k: v for k, v in row.items() if k not in {prompt, chosen, rejected, id} and isinstance(v, (str, int, float, bool))}
        question = next(t["content"] for t in context if t["role"] == "user")
        return Record(id=str(rid) if rid is not None else f"{source}-{line}", source=source, question=question, answer=good,
                      messages=[*context, {"role": "assistant", "content": good}], license=license, meta=extra, rejected=bad)

    return collect(path, to_record, on_error=on_error, skips=skips, limit=limit, split=split, config=config)


def answer_turns(origin: str, line: int, row: dict, name: str, prompt, prompt_name: str) -> tuple[list[dict], str]:
    """``(context turns, last assistant answer)`` of one side of the pair."""
    value = row.get(name)
    if value is None:
        raise DataError(origin, "missing field" if name not in row else "field is null", line=line, field=name)
    if isinstance(value, str) and _HH_TURN.search("\n\n" + value.lstrip("\n")) and value.lstrip().startswith("Human:"):
        value = hh_turns(origin, line, name, value)
    if isinstance(value, str):
        if not value.strip():
            raise DataError(origin, "empty answer", line=line, field=name)
        return prompt_turns(origin, line, prompt, prompt_name), value.strip()
    turns = read_messages(origin, line, {name: value}, name)
    if turns[-1]["role"] != "assistant":
        raise DataError(origin, "the last turn must be the assistant's answer", line=line, field=name)
    context = turns[:-1]
    if prompt is not None and not any(t["role"] == "user" for t in context):  # answer-only list: the prompt comes first
        context = prompt_turns(origin, line, prompt, prompt_name) + context
    return context, turns[-1]["content"]


def prompt_turns(origin: str, line: int, prompt, name: str) -> list[dict]:
    if prompt is None:
        raise DataError(origin, "missing field (needed when chosen/rejected are plain answers)", line=line, field=name)
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError(origin, "empty prompt", line=line, field=name)
        return [{"role": "user", "content": prompt.strip()}]
    if not isinstance(prompt, list) or not prompt:
        raise DataError(origin, f"expected text or a list of turns, got {type(prompt).__name__}", line=line, field=name)
    turns = read_messages(origin, line, {name: [*prompt, {"role": "assistant", "content": "-"}]}, name)[:-1]
    if turns[-1]["role"] != "user":
        raise DataError(origin, "a prompt conversation must end with the user's turn", line=line, field=name)
    return turns


def hh_turns(origin: str, line: int, name: str, text: str) -> list[dict]:
    """Anthropic HH text (``\\n\\nHuman: …\\n\\nAssistant: …``) as ``{role, content}`` turns."""
    parts = _HH_TURN.split("\n\n" + text.lstrip("\n"))
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        if not content.strip():
            raise DataError(origin, f"empty {speaker} turn", line=line, field=name)
        turns.append({"role": role, "content": content.strip()})
    return turns
