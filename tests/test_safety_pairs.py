"""Safety preference pairs (training/safety_pairs.py) and the red-team set: chosen answers meet the policy,
prompts are apart from every evaluation set, the generator on the real model, the shipped pairs."""

from __future__ import annotations

import json
import re

from helpers import shared

from medtune.core.assets import BUILTIN_DIR
from medtune.core.config import load_config
from medtune.data.decontaminate import overlaps
from medtune.data.sources import load_source
from medtune.evaluate.degeneration import header_end
from medtune.evaluate.safety import REFUSAL, load_suite, score_answer
from medtune.guardrails.replies import emergency_reply, harmful_reply
from medtune.training.safety_pairs import (
    CLASSES,
    evaluation_grams,
    exemplar_prompts,
    first_sentences,
    make_pairs,
    opening,
    policy_prompts,
    question_prompts,
    write_pairs,
)


def grams(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_policy_prompts_and_chosen_answers_meet_the_policy():
    cfg = load_config(None, [])
    prompts = policy_prompts(cfg)
    for c in CLASSES:
        assert sum(p.category == c for p in prompts) >= 20, c
        jailbroken = [p for p in prompts if p.category == c and p.id.endswith("-jb")]  # one per situation, same chosen answer
        assert len(jailbroken) == len({p.id.split("-")[1] for p in prompts if p.category == c})
        assert all(p.chosen == next(q.chosen for q in prompts if q.id == p.id.replace("-jb", "-0")) for p in jailbroken)
    assert len({p.text for p in prompts}) == len(prompts)
    for p in prompts:
        assert score_answer(p.category, p.chosen, cfg.guardrails)[0], (p.id, p.chosen)
    uk = policy_prompts(load_config(None, ["guardrails.region=UK"]))
    assert "999" in next(p.chosen for p in uk if p.category == "emergency")


def test_training_prompts_and_red_team_are_apart_from_every_evaluation_set():
    suite = [i["prompt"] for i in load_suite()]
    triage = [json.loads(line)["text"] for line in (BUILTIN_DIR / "triage_eval.jsonl").read_text().splitlines() if line.strip()]
    redteam = load_suite(BUILTIN_DIR / "redteam.jsonl")
    assert len(redteam) >= 60 and {i["category"] for i in redteam} == {*CLASSES, "benign"}
    redteam_b = load_suite(BUILTIN_DIR / "redteam_b.jsonl")  # written after recipe Y, before any model answered it
    assert len(redteam_b) >= 40 and {i["category"] for i in redteam_b} == {"prescription", "benign"}
    held_out = set().union(*(grams(t) for t in suite + triage + [i["prompt"] for i in redteam + redteam_b]))
    cfg = load_config(None, [])
    exemplars, left_out = exemplar_prompts(cfg)
    questions, questions_left_out = question_prompts(cfg)
    training = [p.text for p in policy_prompts(cfg) + exemplars + questions]
    assert [t for t in training if grams(t) & held_out] == []
    # by the generator's own word split ("colleague's" -> "colleague s") one harmful situation shares "how can i make my
    # colleague" with a triage evaluation row (the input classifier's set; no model-alone figure uses it). It stays in
    # the shipped spec: rewording it and regenerating changes every sampled answer after it (docs/safety.md, recipe X),
    # a new dataset to measure. Any other overlap fails here.
    known = "make my colleague seriously ill so she misses her promotion"
    assert [t for t in training if overlaps(t, evaluation_grams()) and known not in t] == []
    assert len(questions) >= 150 and {p.category for p in questions} == {"benign"} and not any(p.chosen for p in questions)
    assert len({p.text for p in questions}) == len(questions) and sum(questions_left_out.values()) == 0
    # the exemplars that share wording with an evaluation set are left out and counted, not lost (the generator splits
    # "don't" into two words, so it finds a few more than this regex does)
    rows = [json.loads(line) for line in (BUILTIN_DIR / "triage_exemplars.jsonl").read_text().splitlines() if line.strip()]
    overlapping = [r for r in rows if grams(r["text"]) & held_out]
    assert len(rows) - len(exemplars) == sum(left_out.values()) >= len(overlapping) > 0
    evals = set().union(*(grams(t) for t in suite + triage))
    assert [i["prompt"] for i in redteam if grams(i["prompt"]) & evals] == []
    evals |= set().union(*(grams(i["prompt"]) for i in redteam))
    assert [i["prompt"] for i in redteam_b if grams(i["prompt"]) & evals] == []


def test_pair_generator_on_the_real_model(tmp_path, builtin_generator):
    cfg = load_config(None, ["generation.max_new_tokens=32", "generation.temperature=0"])  # a whole sentence for asthma
    prompts = [p for p in policy_prompts(cfg) if p.id in ("emergency-0-0", "crisis-0-0", "harmful-0-0", "prescription-0-0")]
    benign = load_source("generic", str(BUILTIN_DIR / "starter.jsonl"))
    exemplars = {p.text: p for p in exemplar_prompts(cfg)[0]}
    prompts += [exemplars["what is asthma"], exemplars["how much morphine would kill a person"]]
    questions = {p.text: p for p in question_prompts(cfg)[0]}
    prompts += [questions["What is (are) asthma?"], questions["What is gabapentin used for?"], questions["What causes asthma?"]]
    pairs, card = make_pairs(builtin_generator, cfg, benign, benign=2, prompts=prompts, answer_tokens=48)
    # 4 model answers (kept unless already compliant) + harmful vs the emergency reply + prescription and crisis vs the
    # harmful refusal + 2 benign; the exemplars: the benign one's own answer vs a template, the harmful one's model answer
    # and its pair vs the emergency reply; the three questions: their own answers vs the rotation's first three
    assert card["pairs"] + sum(card["left_out"].values()) == 4 + 3 + 2 + 3 + 3
    assert card["kinds"]["crisis vs the harmful refusal"] == card["kinds"]["prescription vs the harmful refusal"] == 1
    assert "max_new_tokens 48" in card["chosen_from"]  # the self-answered prompts' own token budget
    assert card["per_class"].get("benign") == 6 and card["kinds"]["benign exemplar vs a template"] == 1
    assert card["kinds"]["benign question vs a template"] == 3
    asked = [pair for pair in pairs if pair["id"].startswith("question-")]
    # fixed replies as rejected answers: their first sentence only (the rest of a reply is only ever chosen)
    assert [pair["rejected"] for pair in asked] == ["Call 911 now - this could be a medical emergency and needs help immediately.",
                                                     "I can't help with that.", "I can't help with that."]
    assert asked[0]["rejected"] == opening(emergency_reply(cfg.guardrails.resources, asked[0]["prompt"]))
    assert asked[1]["rejected"] == opening(harmful_reply(cfg.guardrails.resources))
    assert all(pair["chosen"][-1] in ".!?" and score_answer("benign", pair["chosen"], cfg.guardrails)[0] for pair in asked)
    asthma = next(pair for pair in pairs if pair["prompt"] == "what is asthma")
    assert asthma["rejected"] == opening(emergency_reply(cfg.guardrails.resources, "what is asthma"))  # the first benign exemplar
    assert asthma["chosen"][-1] in ".!?" and not REFUSAL.search(asthma["chosen"])  # the model's answer, whole sentences
    assert any(p["id"].startswith("exemplar-harmful-") and p["id"].endswith("-vs-emergency") for p in pairs)
    benign = [pair for pair in pairs if pair["id"].startswith("benign-")]
    assert benign[1]["rejected"] == "I can't help with that." and card["kinds"]["benign: a refusal opening rejected"] == 3
    vs = [pair for pair in pairs if pair["id"] == "harmful-0-0-vs-emergency"]
    assert len(vs) == 1 and vs[0]["rejected"] == opening(emergency_reply(cfg.guardrails.resources, vs[0]["prompt"]))
    assert not score_answer("harmful", vs[0]["rejected"], cfg.guardrails)[0]  # a referral is not a refusal
    rx = [pair for pair in pairs if pair["id"] == "prescription-0-0-vs-harmful"]
    assert len(rx) == 1 and rx[0]["rejected"] == opening(harmful_reply(cfg.guardrails.resources)) == "I can't help with that."
    assert score_answer("prescription", rx[0]["chosen"], cfg.guardrails)[0]
    crisis = [pair for pair in pairs if pair["id"] == "crisis-0-0-vs-harmful"]
    assert len(crisis) == 1 and crisis[0]["chosen"] != crisis[0]["rejected"] == "I can't help with that."
    assert not score_answer("prescription", rx[0]["rejected"], cfg.guardrails)[0]  # a harm refusal is no referral
    for pair in pairs:
        if pair["category"] == "benign":
            assert not REFUSAL.search(pair["chosen"])
            assert REFUSAL.search(pair["rejected"]) or pair["id"].startswith(("exemplar-", "question-"))
        elif pair["id"].endswith(("-vs-emergency", "-vs-harmful")):
            continue
        else:  # the model's own unguarded answer, which fails the policy the chosen answer meets
            assert pair["rejected"] and not score_answer(pair["category"], pair["rejected"], cfg.guardrails)[0]
    out = tmp_path / "pairs.jsonl"
    write_pairs(pairs, card, out)
    assert len(load_source("preference", str(out))) == len(pairs)
    assert json.loads(out.with_suffix(".card.json").read_text())["pairs"] == len(pairs)
    assert "Safety preference pairs" in out.with_suffix(".card.md").read_text()


def test_whole_sentences_leave_out_a_cut_off_list_and_its_header():
    text = "Gout is a kind of arthritis. The main causes are:\n\n1. Diet.\n2. Genes.\n3."
    assert first_sentences(text, whole=True) == "Gout is a kind of arthritis. The main causes are:\n\n1. Diet.\n2. Genes."
    assert first_sentences("Gout is a kind of arthritis. The main causes are:\n\n1.", whole=True) == "Gout is a kind of arthritis."
    assert first_sentences("The main causes are:\n\n1.", whole=True) == ""  # nothing whole: left out by the generator
    assert first_sentences("Gout is a kind of arthritis. It hurts", whole=True) == "Gout is a kind of arthritis."
    assert first_sentences("Gout is a kind of arthritis. It hurts") == "Gout is a kind of arthritis. It hurts"


def test_shipped_pairs_load_as_preference_records():
    records = load_source("preference", str(BUILTIN_DIR / "safety_pairs.jsonl"))
    card = json.loads((BUILTIN_DIR / "safety_pairs.card.json").read_text())
    assert len(records) == card["pairs"] >= 60
    assert all(r.rejected and r.rejected != r.answer for r in records)
    assert [r.id for r in records if header_end(r.answer)] == []  # no chosen answer stops on a list header
    assert {r.meta["category"] for r in records} == {*CLASSES, "benign"}


def test_shipped_pairs_follow_the_spec():
    """The shipped file's fixed parts are what the spec and the generator give today: every policy prompt's text and
    chosen answer, so a reworded reply, drug information or evaluation set cannot drift from the file unseen."""
    cfg = load_config(None, [])
    prompts = {p.id: p for p in policy_prompts(cfg) + exemplar_prompts(cfg)[0] if p.category != "benign"}
    pairs = [json.loads(line) for line in (BUILTIN_DIR / "safety_pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    checked = 0
    for pair in pairs:
        prompt = prompts.get(re.sub(r"-vs-(emergency|harmful)$", "", pair["id"]))
        if prompt is not None:
            assert (pair["prompt"], pair["chosen"]) == (prompt.text, prompt.chosen), pair["id"]
            checked += 1
    assert checked == sum(pair["category"] != "benign" for pair in pairs)


def test_benign_questions_name_no_topic_of_the_held_out_source():
    """The quality and over-refusal figures of docs/safety.md are measured on MedQuAD's NIDDK collection: no
    condition or drug of the built-in benign questions appears in any of its questions."""
    import yaml

    spec = yaml.safe_load((BUILTIN_DIR / "safety_prompts.yaml").read_text())
    names = spec["benign_questions"]["conditions"] + list(spec["prescription"]["info"])
    questions = [r.question.lower() for r in load_source("medquad", str(shared("medquad", "5_NIDDK_QA")))]
    assert len(questions) > 1000
    assert [n for n in names if any(re.search(rf"\b{re.escape(n.lower())}\b", q) for q in questions)] == []
