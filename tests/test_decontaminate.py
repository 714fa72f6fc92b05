"""medtune.data.decontaminate: n-gram overlap between training questions and eval questions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medtune.data.decontaminate import decontaminate, eval_ngrams, held_out_texts, load_eval_texts
from medtune.data.records import Record
from medtune.data.sources import load_source

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SHARED = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).parents[1].parent / "shared" / "data"))
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")

EVAL = (
    "A 60-year-old man has crushing chest pain for 40 minutes with ST elevation in leads II, III and aVF. "
    "Which artery is most likely occluded?"
)


def rec(id: str, question: str, answer: str = "An answer.", **kw) -> Record:
    return Record(id=id, source=kw.pop("source", "train"), question=question, answer=answer, **kw)


def test_shared_13_gram_is_dropped_and_12_words_are_not():
    words = EVAL.split()
    records = [
        rec("copy", "Please explain: " + " ".join(words[3:16]) + " thanks"),  # 13 words of the eval text
        rec("twelve", "Please explain: " + " ".join(words[3:15]) + " thanks"),  # only 12
        rec("shouty", EVAL.upper().replace(",", " ;")),  # normalised: case and punctuation
        rec("unrelated", "My knee is swollen after a fall, what should I do about it now please?"),
    ]
    result = decontaminate(records, [EVAL])
    assert [r.id for r in result.records] == ["twelve", "unrelated"]
    assert result.dropped == {"eval_overlap": 2}
    assert result.examples == {"eval_overlap": ["copy", "shouty"]}
    assert result.by_source == {"eval_overlap": {"train": 2}}
    assert [r.id for r in decontaminate(records, [EVAL], n=8).records] == ["unrelated"]


def test_short_eval_texts_must_appear_whole():
    short = "Drug of choice for uncomplicated vivax malaria is"  # 8 words < 13
    tiny = "Drug of choice is"  # under min_words: ignored
    records = [
        rec("contains", "Tell me: the drug of choice for uncomplicated vivax malaria is which one?"),
        rec("partial", "What is the drug of choice for malaria?"),
    ]
    assert [r.id for r in decontaminate(records, [short, tiny]).records] == ["partial"]
    assert decontaminate(records, [tiny]).dropped == {}
    assert set(eval_ngrams([short, tiny])) == {8}


def test_fields_and_dialogues():
    turns = [
        {"role": "user", "content": "Hello doctor."},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": EVAL},
        {"role": "assistant", "content": "The right coronary artery."},
    ]
    records = [rec("dialogue", "Hello doctor.", messages=turns), rec("in-answer", "What happened?", answer=EVAL)]
    assert decontaminate(records, [EVAL]).examples == {"eval_overlap": ["dialogue"]}
    assert decontaminate(records, [EVAL], fields=("answer",)).examples == {"eval_overlap": ["in-answer"]}


def test_eval_texts_from_mcq_files_and_held_out_records():
    texts = load_eval_texts([FIXTURES / "medqa.jsonl"], kind="medqa")
    assert texts[1] == EVAL  # the stem, without the lettered options
    held_out = load_source("medqa", FIXTURES / "medqa.jsonl")
    assert held_out_texts(held_out) == texts
    training = [rec("leak", "Case: " + EVAL + " Explain."), rec("fine", "What is angina?")]
    assert [r.id for r in decontaminate(training, texts).records] == ["fine"]


def test_bad_options():
    with pytest.raises(ValueError, match="positive"):
        decontaminate([], [EVAL], n=0)


@needs_shared
def test_real_pubmedqa_expert_set_against_the_test_file():
    eval_texts = load_eval_texts([SHARED / "mcq" / "pubmedqa.test.jsonl"])
    expert = load_source("pubmedqa", SHARED / "pubmedqa" / "ori_pqal.json")
    result = decontaminate(expert, eval_texts)
    test_ids = set(json.loads((SHARED / "pubmedqa" / "test_ground_truth.json").read_text()))
    assert result.dropped == {"eval_overlap": 500}
    assert not {r.id.split("-")[-1] for r in result.records} & test_ids


@needs_shared
def test_real_medqa_questions_planted_in_chatdoctor_are_found():
    eval_texts = load_eval_texts([SHARED / "mcq" / f"{name}.test.jsonl" for name in ("medqa", "medmcqa", "pubmedqa")])
    training = load_source("chatdoctor", SHARED / "genmedgpt" / "chatdoctor5k.json")
    assert decontaminate(training, eval_texts).dropped == {}  # GenMedGPT does not overlap the benchmarks
    medqa = load_source("medqa", SHARED / "mcq" / "medqa.test.jsonl", limit=20)
    planted = [rec(f"planted-{i}", "Doctor, " + r.meta["stem"]) for i, r in enumerate(medqa)]
    result = decontaminate(training + planted, eval_texts)
    assert result.dropped == {"eval_overlap": 20} and len(result.records) == len(training)
