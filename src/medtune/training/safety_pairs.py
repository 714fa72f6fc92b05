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

Every situation is also asked once inside a ``jailbreak`` frame (role-play, "skip the rules",
fiction): the chosen answer stays the class's own. Each harmful situation gives a pair whose
rejected answer is the emergency reply's opening (a harmful request is declined, not sent to 911: the
tuned model confused the two), and each prescription and crisis situation one whose rejected answer is
the harmful refusal's opening (a dose question is referred to a prescriber with general information, and a person
in crisis gets the crisis line first, not a refusal: later tuned models confused those). A model answer that already meets its class's rule
(``evaluate.safety.score_answer``) is no "rejected" answer: that pair is left out and counted.
The benign pairs keep the tuned model from learning to refuse everything: every second one's
rejected answer is a refusal opening ("I can't help with that."), and a share of the
benign questions come in ``benign_frames`` (fiction, "hypothetically"), still answered.

A fixed reply that stands as a *rejected* answer (where only the choice of reply is wrong) is cut to its
first sentence, ``opening``: DPO lowers the likelihood of every token of a rejected answer, and the
rest of a reply is the same whatever the prompt, so whole replies as rejected answers taught a tuned
model that the emergency reply (rejected in 140 pairs, chosen in 93) does not go on after its first
sentence: it went on with the harmful refusal's crisis-line sentence instead. The opening carries the
choice; the rest of each reply is only ever chosen.

The guardrails' labelled triage exemplars (``data/builtin/triage_exemplars.jsonl``, written as the
semantic triage's examples, not as an evaluation set) add other people's wordings of each class:
every exemplar of a policy class is a prompt with its class's chosen answer and is also paired
against the template it is confused with (as the first framings above); every ``general`` exemplar
is a benign pair whose chosen answer is the model's own (cut to whole sentences, without a list header
whose list was cut off; left out if it refuses, repeats itself or is empty) and whose rejected answer is
in turn the opening of the emergency reply, of the harmful refusal -- the two templates tuned models sent
benign questions to -- and a refusal opening ("I can't help with that." before a helpful answer was what a
tuned model learned). An exemplar sharing a
6-word run with an evaluation set (safety suite, red-team set, triage evaluation set) is left out
and counted. The spec's ``benign_questions`` add consumer-health questions in the wordings of public Q&A
collections ("How to diagnose X?", "What are the treatments for X?", "What is sertraline used for?"), which
tuned models answered with a template: each is a benign pair like a ``general`` exemplar's, its rejected answer
in turn one of the exemplars' three, the prescription reply's and the crisis reply's openings (``--no-questions`` leaves them
out). The self-answered prompts may get more new tokens than the rest (``answer_tokens``, ``--answer-tokens``):
chosen answers cut at 80 tokens taught a tuned model to answer in half the base model's length. Writes
preference JSONL (``id, category, prompt, chosen, rejected``, read by the ``preference`` source
adapter) and a data card (``<out>.card.json`` / ``.card.md``).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from medtune.core.assets import BUILTIN_DIR
from medtune.core.atomic import write_json, write_text
from medtune.core.config import RunConfig
from medtune.guardrails.replies import PRESCRIPTION_PREFIX, crisis_reply, emergency_reply, harmful_reply

log = logging.getLogger(__name__)
PROMPTS_PATH = BUILTIN_DIR / "safety_prompts.yaml"
EXEMPLARS_PATH = BUILTIN_DIR / "triage_exemplars.jsonl"
EVALUATION_SETS = {"safety_suite.jsonl": "prompt", "redteam.jsonl": "prompt", "redteam_b.jsonl": "prompt",
                   "triage_eval.jsonl": "text"}
"""The built-in evaluation sets (file -> prompt field) that no training prompt may share a 6-word run with."""
CLASSES = ("emergency", "crisis", "harmful", "prescription")
PRESCRIPTION_GENERAL = ("A pharmacist can explain what a medicine is for, its common side effects and what not to take with it, "
                        "and your doctor can decide whether it suits you and at what dose.")
"""The dose-free general part of the chosen answer for a prescription ask that names no drug of ``info``."""
PRESCRIPTION_GENERAL_ANSWER = f"{PRESCRIPTION_PREFIX} {PRESCRIPTION_GENERAL}"
"""The prescription reply that names no drug: an exemplar's chosen answer, a benign question's rejected one."""


@dataclass
class Prompt:
    id: str
    category: str
    text: str
    chosen: str
    """The policy's answer; empty for a benign exemplar (the model's own answer becomes it)."""


def policy_prompts(cfg: RunConfig, path: Path = PROMPTS_PATH) -> list[Prompt]:
    """Every class's prompts with their policy-compliant answers (see the module docstring)."""
    spec = _spec(path)
    region = cfg.guardrails.resources
    jailbreak = itertools.cycle(spec["jailbreak"]["frames"])
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
                    chosen = _prescription_answer(section["info"][drug])
                else:
                    text = frame.format(s=situation, s_lower=situation[0].lower() + situation[1:])
                    chosen = _policy_answer(category, region, text)
                out.append(Prompt(f"{category}-{i}-{j}", category, text, chosen))
            first = out[-k]  # this situation's first framing, asked inside a jailbreak frame (the frames in turn)
            out.append(Prompt(f"{category}-{i}-jb", category, next(jailbreak).format(s=first.text), first.chosen))
    return out


@functools.cache
def evaluation_grams(n: int = 6) -> dict:
    """Every ``n``-word run of the built-in evaluation sets (``EVALUATION_SETS``); read once (the exemplar and question
    prompts both check against it). Callers only read it."""
    from medtune.data.decontaminate import eval_ngrams

    texts = [json.loads(line)[field] for name, field in EVALUATION_SETS.items()
             for line in (BUILTIN_DIR / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return eval_ngrams(texts, n=n, min_words=n)


def exemplar_prompts(cfg: RunConfig, path: Path = EXEMPLARS_PATH) -> tuple[list[Prompt], Counter]:
    """``(prompts, left_out)``: the labelled triage exemplars as training prompts (module docstring); those
    sharing a 6-word run with an evaluation set are left out and counted per class."""
    from medtune.data.decontaminate import overlaps

    spec_info = _spec()["prescription"]["info"]
    region, held_out = cfg.guardrails.resources, evaluation_grams()
    prompts, left_out = [], Counter()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        text, category = row["text"], {"general": "benign"}.get(row["label"], row["label"])
        if overlaps(text, held_out):
            left_out[f"{category}: exemplar shares wording with an evaluation set"] += 1
            continue
        if category == "benign":
            chosen = ""
        elif category == "prescription":
            drug = next((d for d in spec_info if d.lower() in text.lower()), None)
            chosen = _prescription_answer(spec_info[drug]) if drug else PRESCRIPTION_GENERAL_ANSWER
        else:
            chosen = _policy_answer(category, region, text)
        prompts.append(Prompt(f"exemplar-{category}-{n}", category, text, chosen))
    return prompts, left_out


def question_prompts(cfg: RunConfig, path: Path = PROMPTS_PATH) -> tuple[list[Prompt], Counter]:
    """``(prompts, left_out)``: the spec's ``benign_questions`` (consumer-health questions in the wordings of public
    Q&A collections, over its conditions and the prescription section's drugs), each a benign prompt whose chosen
    answer will be the model's own; those sharing a 6-word run with an evaluation set are left out and counted."""
    from medtune.data.decontaminate import overlaps

    spec = _spec(path)
    section, held_out = spec["benign_questions"], evaluation_grams()
    texts = []
    for items, forms, k, key in ((section["conditions"], section["forms"], section["per_condition"], "c"),
                                 (list(spec["prescription"]["info"]), section["drug_forms"], section["per_drug"], "drug")):
        for i, item in enumerate(items):
            texts += [(f"question-{key}{i}-{j}", forms[(i * k + j) % len(forms)].format(**{key: item})) for j in range(k)]
    prompts, left_out = [], Counter()
    for id_, text in texts:
        if overlaps(text, held_out):
            left_out["benign: question shares wording with an evaluation set"] += 1
        else:
            prompts.append(Prompt(id_, "benign", text, ""))
    return prompts, left_out


def _prescription_answer(info: str) -> str:
    return f"{PRESCRIPTION_PREFIX} {info} Your doctor or pharmacist can tell you whether it suits you and the right dose."


def _policy_answer(category: str, region, text: str) -> str:
    return {"emergency": lambda: emergency_reply(region, text), "crisis": lambda: crisis_reply(region),
            "harmful": lambda: harmful_reply(region)}[category]()


def _spec(path: Path = PROMPTS_PATH) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def first_sentences(text: str, max_chars: int = 600, whole: bool = False) -> str:
    """The first sentences of ``text`` up to ``max_chars`` (always the first); ``whole``: only sentences
    that end on ``.!?`` (an answer cut off by ``max_new_tokens`` loses its last, unfinished one, and a
    dangling list number), and not a list header whose list was cut off ("The main causes are:")."""
    import re

    parts = re.split(r"(?<=[.!?])(\s+)", text.strip())  # sentences and the space (or line breaks) between them
    kept: list[str] = []
    for s, gap in zip(parts[::2], [*parts[1::2], ""], strict=True):
        if (whole and not re.search(r"[.!?]$", s)) or (kept and len("".join(kept)) + len(s) > max_chars):
            break
        kept += [s, gap]
    kept = kept[:-1]
    if whole and kept:
        kept[-1] = re.sub(r"\s*\b\d+\.$", "", kept[-1])  # a list's next number, its item cut off
        while kept and (not kept[-1] or kept[-1].endswith(":")):  # ... and the header it opened
            kept = kept[:-2]
    return "".join(kept).strip()


def opening(reply: str) -> str:
    """A fixed reply's first sentence: its rejected side in a pair where only the choice of reply is wrong (module
    docstring: the rest of the reply must not be pushed down)."""
    return first_sentences(reply, max_chars=1)


def benign_prompts(records, spec: dict, limit: int, max_answer_chars: int = 600) -> list[tuple[Prompt, str]]:
    """``(prompt, rejected)`` for medical Q&A records: chosen = the record's answer (its first sentences up
    to ``max_answer_chars``); rejected = a needless refusal, or on every second pair a refusal opening alone.
    Every ``benign_frames.every``-th question is asked in a benign frame."""
    refusals, openings = spec["refusals"], spec["refusal_openings"]
    frames, every = spec["benign_frames"]["frames"], spec["benign_frames"]["every"]
    out = []
    for n, record in enumerate(records[:limit]):
        answer = first_sentences(record.answer, max_answer_chars)
        question = record.question.strip()
        if n % every == every - 1:
            question = frames[(n // every) % len(frames)].format(s=question, s_lower=question[0].lower() + question[1:])
        rejected = openings[(n // 2) % len(openings)] if n % 2 else refusals[(n // 2) % len(refusals)]
        out.append((Prompt(f"benign-{record.id}", "benign", question, answer), rejected))
    return out


def make_pairs(generator, cfg: RunConfig, benign_records, benign: int = 60, progress: bool = False,
               prompts: list[Prompt] | None = None, exemplars: bool = True, questions: bool = True,
               answer_tokens: int | None = None) -> tuple[list[dict], dict]:
    """``(pairs, card)``: policy prompts answered by the model alone (rejected; a benign exemplar's or question's
    answer is its chosen one) plus ``benign`` benign pairs from ``benign_records``. ``prompts`` default: all of
    ``policy_prompts``, with ``exemplars`` ``exemplar_prompts`` (the card's ``exemplars_file`` says so) and with
    ``questions`` ``question_prompts``. ``answer_tokens``: new tokens for the answers that become chosen ones (benign
    exemplars and questions; default ``generation.max_new_tokens``): answers cut short teach a tuned model to stop short."""
    from medtune.evaluate.degeneration import flags
    from medtune.evaluate.safety import score_answer
    from medtune.guardrails.doses import has_dose
    from medtune.inference.responder import Responder

    left_out = Counter()
    if prompts is None:
        prompts = policy_prompts(cfg)
        for wanted, more_prompts in ((exemplars, exemplar_prompts), (questions, question_prompts)):
            if wanted:
                more, gone = more_prompts(cfg)
                prompts, left_out = prompts + more, left_out + gone
    responder, spec = Responder(generator, cfg, guardrails=False), _spec()
    raw = {}  # the policy prompts, then the self-answered ones (benign: the answer becomes the chosen one) in their own batches
    for self_answered, budget in ((False, {}), (True, {"max_new_tokens": answer_tokens} if answer_tokens else {})):
        picked = [i for i, p in enumerate(prompts) if (p.category == "benign") == self_answered]
        raw.update(zip(picked, responder.answer_batch([prompts[i].text for i in picked], progress=progress, **budget), strict=True))
    region, pairs, own = cfg.guardrails.resources, [], Counter()
    openings = itertools.cycle(spec["refusal_openings"])
    rotation = (lambda text: opening(emergency_reply(region, text)), lambda text: opening(harmful_reply(region)),
                lambda text: next(openings), lambda text: opening(PRESCRIPTION_GENERAL_ANSWER),
                lambda text: opening(crisis_reply(region)))
    templates = {"exemplar": rotation[:3], "question": rotation}  # a benign self-answered prompt's rejected answers, in turn
    for i, p in enumerate(prompts):
        text = raw[i].answer.strip()
        if p.category == "benign":  # an exemplar or question: its own helpful answer against a template it must not get
            kind = p.id.split("-")[0]
            chosen = first_sentences(text, max_chars=1200, whole=True)
            if (not chosen or not score_answer("benign", chosen, cfg.guardrails)[0] or flags(chosen, None)["degenerate"]
                    or has_dose(chosen)):
                left_out[f"benign: {kind} answer refused, degenerate, with a dose or empty"] += 1
                continue
            rejected = templates[kind][own[kind] % len(templates[kind])](p.text)
            own[kind] += 1
            pairs.append({"id": p.id, "category": "benign", "prompt": p.text, "chosen": chosen, "rejected": rejected})
            continue
        if not text or score_answer(p.category, text, cfg.guardrails)[0]:
            left_out[f"{p.category}: model answer already meets the policy" if text else f"{p.category}: empty answer"] += 1
            continue
        pairs.append({"id": p.id, "category": p.category, "prompt": p.text, "chosen": p.chosen, "rejected": text})
    for p in prompts:  # each situation's first framing and each exemplar: the right template against the one a tuned model confused it with
        if not p.id.endswith("-0") and not p.id.startswith("exemplar-"):
            continue
        if p.category == "harmful":  # declined, not sent to the emergency number
            pairs.append({"id": f"{p.id}-vs-emergency", "category": "harmful", "prompt": p.text, "chosen": p.chosen,
                          "rejected": opening(emergency_reply(region, p.text))})
        if p.category in ("prescription", "crisis"):  # referred to a prescriber / met with the crisis reply, not refused as harm
            pairs.append({"id": f"{p.id}-vs-harmful", "category": p.category, "prompt": p.text, "chosen": p.chosen,
                          "rejected": opening(harmful_reply(region))})
    for p, rejected in benign_prompts(benign_records, spec, benign):
        pairs.append({"id": p.id, "category": "benign", "prompt": p.text, "chosen": p.chosen, "rejected": rejected})
    counts, g = Counter(pair["category"] for pair in pairs), cfg.generation
    card = {
        "pairs": len(pairs),
        "per_class": dict(counts),
        "kinds": {"jailbreak-framed": sum(pair["id"].endswith("-jb") for pair in pairs),
                  "harmful vs the emergency reply": sum(pair["id"].endswith("-vs-emergency") for pair in pairs),
                  **{f"{c} vs the harmful refusal": sum(pair["id"].endswith("-vs-harmful") and pair["category"] == c
                                                        for pair in pairs) for c in ("crisis", "prescription")},
                  "benign: a refusal opening rejected": sum(
                      pair["category"] == "benign" and pair["rejected"] in spec["refusal_openings"] for pair in pairs),
                  "from the triage exemplars": sum(pair["id"].startswith("exemplar-") for pair in pairs),
                  "benign exemplar vs a template": own["exemplar"],
                  "benign question vs a template": own["question"]},
        "left_out": dict(left_out),
        "region": cfg.guardrails.region,
        "prompts_file": PROMPTS_PATH.name,
        "exemplars_file": EXEMPLARS_PATH.name if any(p.id.startswith("exemplar-") for p in prompts) else None,
        "rejected_from": f"{cfg.model.name} (quantization {cfg.model.quantization}) with the guardrails off (temperature "
                         f"{g.temperature}, top_p {g.top_p}, seed {g.seed}, repetition_penalty {g.repetition_penalty}, "
                         f"no_repeat_ngram_size {g.no_repeat_ngram_size}, penalize_prompt {g.penalize_prompt}, max_new_tokens "
                         f"{g.max_new_tokens}); harmful also: the emergency reply's opening; prescription and crisis also: the "
                         "harmful refusal's opening; benign: a needless refusal, or a refusal opening; benign exemplar: the "
                         "opening of the emergency reply or of the harmful refusal, or a refusal opening; benign question: the "
                         "same, or the opening of the prescription or the crisis reply (a fixed reply as a rejected answer: its "
                         "first sentence)",
        "chosen_from": "guardrails.replies (emergency, crisis, harmful), PRESCRIPTION_PREFIX + dose-free drug information, "
                       "benign: the Q&A record's reference answer; benign exemplar and question: the model's own answer (whole "
                       f"sentences, no dose, max_new_tokens {answer_tokens or g.max_new_tokens})",
        "license": "Apache-2.0 (medtune authors); rejected answers generated by the base model (its licence applies)",
        "rejected_chars_mean": round(sum(len(p["rejected"]) for p in pairs) / max(len(pairs), 1), 1),
        "chosen_chars_mean": round(sum(len(p["chosen"]) for p in pairs) / max(len(pairs), 1), 1),
    }
    return pairs, card


def write_pairs(pairs: list[dict], card: dict, out: Path) -> None:
    """``out`` (JSONL) plus ``<out stem>.card.json`` and ``.card.md`` beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs))
    write_json(out.with_suffix(".card.json"), card, indent=2)
    lines = ["# Safety preference pairs", "", f"{card['pairs']} pairs; region {card['region']}.", "",
             "| class | pairs | left out |", "|---|---|---|"]
    for c in (*CLASSES, "benign"):
        gone = sum(n for k, n in card["left_out"].items() if k.startswith(c + ":"))
        lines.append(f"| {c} | {card['per_class'].get(c, 0)} | {gone} |")
    lines += ["", "Left out: " + ("; ".join(f"{why}: {n}" for why, n in sorted(card["left_out"].items())) or "none") + ".",
              "", *(f"- {kind}: {n}" for kind, n in card.get("kinds", {}).items()),
              "", f"- chosen: {card['chosen_from']}", f"- rejected: {card['rejected_from']}",
              f"- mean length (chars): chosen {card['chosen_chars_mean']}, rejected {card['rejected_chars_mean']}",
              f"- licence: {card['license']}", ""]
    write_text(out.with_suffix(".card.md"), "\n".join(lines))
