"""Safety preference pairs from the guardrail policy (``medtune safety-pairs --out FILE``).

For every triage class the prompts come from ``data/builtin/safety_prompts.yaml`` (situations put
through templated paraphrases; none shared with the safety suite, the triage set or the red-team
set). Each pair is:

==============  ======================================================  ==================================
class           chosen (what the policy says)                           rejected
==============  ======================================================  ==================================
emergency       ``guardrails.replies.emergency_reply``: call the         the model's own answer with the
                emergency number first                                  guardrails off
crisis          ``crisis_reply``: the crisis line, no method details     same
harmful         ``harmful_reply``: declined, Poison Control resources   same
prescription    ``PRESCRIPTION_PREFIX`` + dose-free general information  same
benign          the reference answer of a medical Q&A record            a needless refusal
==============  ======================================================  ==================================

A model answer that already meets its class's rule (``evaluate.safety.score_answer``) is no
"rejected" answer: that pair is left out and counted. The benign pairs keep the tuned model from
learning to refuse everything. Writes preference JSONL (``id, category, prompt, chosen, rejected``,
read by the ``preference`` source adapter) and a data card (``<out>.card.json`` / ``.card.md``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from medtune.core.assets import BUILTIN_DIR
from medtune.core.config import RunConfig
from medtune.guardrails.replies import PRESCRIPTION_PREFIX, crisis_reply, emergency_reply, harmful_reply

log = logging.getLogger(__name__)
PROMPTS_PATH = BUILTIN_DIR / "safety_prompts.yaml"
CLASSES = ("emergency", "crisis", "harmful", "prescription")


@dataclass
class Prompt:
    id: str
    category: str
    text: str
    chosen: str


def policy_prompts(cfg: RunConfig, path: Path = PROMPTS_PATH) -> list[Prompt]:
    """Every class's prompts with their policy-compliant answers (see the module docstring)."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    region = cfg.guardrails.resources
    out = []
    for category in CLASSES:
        section = spec[category]
        frames, k = section["frames"], section["per_situation"]
        for i, situation in enumerate(section["situations"]):
            for j in range(k):
                frame = frames[(i + j) % len(frames)]
                if category == "prescription":
                    drug, condition = situation.split("|")
                    text = frame.format(drug=drug, condition=condition)
                    chosen = (f"{PRESCRIPTION_PREFIX} {section['info'][drug]} "
                              "Your doctor or pharmacist can tell you whether it suits you and the right dose.")
                else:
                    text = frame.format(s=situation, s_lower=situation[0].lower() + situation[1:])
                    chosen = {"emergency": lambda t: emergency_reply(region, t), "crisis": lambda t: crisis_reply(region),
                              "harmful": lambda t: harmful_reply(region)}[category](text)
                out.append(Prompt(f"{category}-{i}-{j}", category, text, chosen))
    return out


def benign_prompts(records, refusals: list[str], limit: int, max_answer_chars: int = 600) -> list[tuple[Prompt, str]]:
    """``(prompt, rejected refusal)`` for medical Q&A records: chosen = the record's answer (its first
    sentences up to ``max_answer_chars``), rejected = one of the needless refusals, in turn."""
    import re

    out = []
    for record in records[:limit]:
        sentences, answer = re.split(r"(?<=[.!?])\s+", record.answer.strip()), ""
        for s in sentences:
            if answer and len(answer) + len(s) > max_answer_chars:
                break
            answer = f"{answer} {s}".strip()
        refusal = refusals[len(out) % len(refusals)]
        out.append((Prompt(f"benign-{record.id}", "benign", record.question, answer), refusal))
    return out


def make_pairs(generator, cfg: RunConfig, benign_records, benign: int = 30, progress: bool = False,
               prompts: list[Prompt] | None = None) -> tuple[list[dict], dict]:
    """``(pairs, card)``: policy prompts (default: all of ``policy_prompts``) answered by the model alone
    (rejected) plus ``benign`` benign pairs."""
    import yaml

    from medtune.evaluate.safety import score_answer
    from medtune.inference.responder import Responder

    prompts = policy_prompts(cfg) if prompts is None else prompts
    raw = Responder(generator, cfg, guardrails=False).answer_batch([p.text for p in prompts], progress=progress)
    pairs, left_out = [], Counter()
    for p, answer in zip(prompts, raw, strict=True):
        rejected = answer.answer.strip()
        if not rejected or score_answer(p.category, rejected, cfg.guardrails)[0]:
            left_out[f"{p.category}: model answer already meets the policy" if rejected else f"{p.category}: empty answer"] += 1
            continue
        pairs.append({"id": p.id, "category": p.category, "prompt": p.text, "chosen": p.chosen, "rejected": rejected})
    refusals = yaml.safe_load(PROMPTS_PATH.read_text(encoding="utf-8"))["refusals"]
    for p, refusal in benign_prompts(benign_records, refusals, benign):
        pairs.append({"id": p.id, "category": "benign", "prompt": p.text, "chosen": p.chosen, "rejected": refusal})
    counts, g = Counter(pair["category"] for pair in pairs), cfg.generation
    card = {
        "pairs": len(pairs),
        "per_class": dict(counts),
        "left_out": dict(left_out),
        "region": cfg.guardrails.region,
        "prompts_file": PROMPTS_PATH.name,
        "rejected_from": f"{cfg.model.name} with the guardrails off (temperature {g.temperature}, top_p {g.top_p}, seed {g.seed}, "
                         f"repetition_penalty {g.repetition_penalty}, max_new_tokens {g.max_new_tokens})",
        "chosen_from": "guardrails.replies (emergency, crisis, harmful), PRESCRIPTION_PREFIX + dose-free drug information, "
                       "benign: the Q&A record's reference answer",
        "license": "Apache-2.0 (medtune authors); rejected answers generated by the base model (its licence applies)",
        "rejected_chars_mean": round(sum(len(p["rejected"]) for p in pairs) / max(len(pairs), 1), 1),
        "chosen_chars_mean": round(sum(len(p["chosen"]) for p in pairs) / max(len(pairs), 1), 1),
    }
    return pairs, card


def write_pairs(pairs: list[dict], card: dict, out: Path) -> None:
    """``out`` (JSONL) plus ``<out stem>.card.json`` and ``.card.md`` beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for pair in pairs:
            f.write(json.dumps(pair, ensure_ascii=False) + "\n")
    out.with_suffix(".card.json").write_text(json.dumps(card, indent=2))
    lines = ["# Safety preference pairs", "", f"{card['pairs']} pairs; region {card['region']}.", "",
             "| class | pairs | left out (model already compliant / empty) |", "|---|---|---|"]
    for c in (*CLASSES, "benign"):
        gone = sum(n for k, n in card["left_out"].items() if k.startswith(c + ":"))
        lines.append(f"| {c} | {card['per_class'].get(c, 0)} | {gone} |")
    lines += ["", f"- chosen: {card['chosen_from']}", f"- rejected: {card['rejected_from']}; benign: a needless refusal",
              f"- mean length (chars): chosen {card['chosen_chars_mean']}, rejected {card['rejected_chars_mean']}",
              f"- licence: {card['license']}", ""]
    out.with_suffix(".card.md").write_text("\n".join(lines))
