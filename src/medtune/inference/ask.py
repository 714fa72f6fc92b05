"""Answering prompts through the guardrails: triage before the model, checks after.

One code path for ``medtune ask`` (single and batch), the safety suite and the API: prompts
whose triage calls for a fixed reply never reach the model; the rest are generated in
batches (with the triage's system addendum) and post-checked.
"""

from __future__ import annotations

import json
from pathlib import Path

from medtune.data.errors import DataError
from medtune.data.files import field_text, read_rows
from medtune.guardrails import Guardrails


def read_prompts(path: Path) -> list[dict]:
    """``{"id", "prompt"}`` rows of a JSONL file; a bad line is an error naming file, line and field."""
    if Path(path).suffix.lower() != ".jsonl":
        raise DataError(str(path), "batch input must be a .jsonl file")
    items, seen = [], set()
    for line, row in read_rows(path):
        prompt = field_text(path, line, row, "prompt")
        rid = field_text(path, line, row, "id", required=False) or str(line)
        if rid in seen:
            raise DataError(str(path), f"duplicate id {rid!r}", line=line, field="id")
        seen.add(rid)
        items.append({"id": rid, "prompt": prompt})
    return items


def answer_all(generator, cfg, items: list[dict], guardrails: Guardrails | None = None, progress: bool = False) -> list[dict]:
    """Answers with their triage label and the guardrail rules that fired, in input order."""
    guardrails = guardrails or Guardrails(cfg.guardrails)
    decisions = [guardrails.before(item["prompt"]) for item in items]
    to_model = [i for i, d in enumerate(decisions) if d.reply is None]
    generated = generator.generate(
        [[{"role": "user", "content": items[i]["prompt"]}] for i in to_model],
        cfg.generation,
        system_addenda=[decisions[i].system_addendum for i in to_model],
        progress=progress,
    )
    raw = dict(zip(to_model, generated))
    out = []
    for i, (item, decision) in enumerate(zip(items, decisions)):
        guarded = guardrails.after(decision, raw.get(i, decision.reply or ""))
        out.append({**item, "answer": guarded.answer, "triage": guarded.triage, "fired": guarded.fired})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
