"""medtune.data.dedup: exact and near-duplicate removal (MinHash + LSH)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from medtune.data.dedup import dedupe, minhash_signatures, normalize
from medtune.data.records import Record
from medtune.data.sources import load_source

SHARED = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).parents[1].parent / "shared" / "data"))
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")

ANSWER = (
    "Your symptoms of burning pain behind the breastbone after meals and at night suggest gastro-oesophageal reflux. "
    "Avoid large late meals, raise the head of the bed, cut down on coffee, alcohol and fatty food, and stop smoking. "
    "A four week course of a proton pump inhibitor such as omeprazole 20 mg before breakfast usually settles it. "
    "See your doctor soon if you have trouble swallowing, weight loss, vomiting blood or black stools, because then "
    "an endoscopy is needed to look for an ulcer or other causes."
)
QUESTION = "I get burning chest pain after dinner and when lying down. What is it and what should I do?"


def rec(id: str, question: str = QUESTION, answer: str = ANSWER, source: str = "a", **kw) -> Record:
    return Record(id=id, source=source, question=question, answer=answer, **kw)


def test_normalize():
    assert normalize("Hello,  WORLD!\n(It's) 5.7%") == [b"hello", b"world", b"it", b"s", b"5", b"7"]
    assert normalize("Café — “quoted”") == ["café".encode(), b"quoted"]


def test_exact_duplicates_up_to_case_whitespace_and_punctuation():
    records = [
        rec("a1"),
        rec("a2", question=QUESTION.upper(), answer=ANSWER.replace(" ", "   ").replace(",", "")),
        rec("b1", source="b"),
        rec("other", answer="Rest and fluids."),
    ]
    result = dedupe(records, near=False)
    assert [r.id for r in result.records] == ["a1", "other"]
    assert result.dropped == {"exact_duplicate": 2}
    assert result.examples == {"exact_duplicate": ["a2", "b1"]}
    assert result.by_source == {"exact_duplicate": {"a": 1, "b (dup of a)": 1}}


def test_preference_pairs_that_reject_different_answers_are_not_duplicates():
    # the safety pairs give one prompt and chosen answer two rejected answers (the model's own, and the template
    # it is confused with): both are training pairs; the same pair twice is still a duplicate
    records = [rec("own", rejected="Take 40 mg a day."), rec("vs-template", rejected="Call 911 now."),
               rec("again", rejected="Call 911 now.")]
    result = dedupe(records, near=False)
    assert [r.id for r in result.records] == ["own", "vs-template"] and result.dropped == {"exact_duplicate": 1}
    # an SFT stage trains on the prompt and chosen answer alone: there the three are one record
    sft = dedupe(records, near=False, rejected=False)
    assert [r.id for r in sft.records] == ["own"] and sft.dropped == {"exact_duplicate": 2}


def test_near_duplicates_are_dropped_and_distinct_texts_kept():
    words = ANSWER.split()
    one_word = " ".join(words[:30] + ["really"] + words[31:])  # one word changed: Jaccard of 5-gram shingles ~0.9
    rewritten = " ".join(w if i % 4 else "x" for i, w in enumerate(words))  # every 4th word changed
    records = [
        rec("orig"),
        rec("near", answer=one_word, source="b"),
        rec("rewritten", answer=rewritten),
        rec("other", question="My knee is swollen after a fall.", answer="Rest, ice and an X-ray of the knee."),
    ]
    result = dedupe(records)
    assert [r.id for r in result.records] == ["orig", "rewritten", "other"]
    assert result.dropped == {"near_duplicate": 1}
    assert result.examples == {"near_duplicate": ["near"]}
    assert result.by_source == {"near_duplicate": {"b (dup of a)": 1}}
    assert [r.id for r in dedupe(records, near=False).records] == ["orig", "near", "rewritten", "other"]
    assert [r.id for r in dedupe(records, threshold=0.95).records] == ["orig", "near", "rewritten", "other"]


def test_keeps_the_first_occurrence_and_is_deterministic():
    base = ANSWER.split()
    records = [rec(f"r{i}", answer=" ".join(base[: 40 + i] + ["extra"] + base[40 + i :])) for i in range(5)]
    first = dedupe(records)
    assert first.records[0].id == "r0"
    assert [r.id for r in dedupe(records).records] == [r.id for r in first.records]


def test_dialogues_and_short_texts():
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"}]
    records = [
        rec("d1", question="Hi", answer="Hello, how can I help?", messages=turns),
        rec("d2", question="HI!", answer="Hello how can I help", messages=[dict(t) for t in turns]),
        rec("s1", question="Fever?", answer="Rest."),
        rec("s2", question="Cough?", answer="Rest."),
    ]
    result = dedupe(records)
    assert [r.id for r in result.records] == ["d1", "s1", "s2"]
    assert dedupe([]).records == [] and dedupe(records[:1]).records == records[:1]


def test_signatures_estimate_jaccard():
    rng = random.Random(0)
    vocab = [f"w{i}".encode() for i in range(3000)]
    base = [rng.choice(vocab) for _ in range(300)]

    def shingles(doc):
        return {tuple(doc[i : i + 5]) for i in range(len(doc) - 4)}

    for edits in (0, 3, 10, 40):
        doc = list(base)
        for _ in range(edits):
            doc[rng.randrange(len(doc))] = rng.choice(vocab)
        a, b = minhash_signatures([base, doc], num_perm=256)
        true = len(shingles(base) & shingles(doc)) / len(shingles(base) | shingles(doc))
        assert abs(np.mean(a == b) - true) < 0.1


def test_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        dedupe([rec("a")], threshold=0)


@needs_shared
def test_real_genmedgpt_with_planted_duplicates():
    records = load_source("chatdoctor", SHARED / "genmedgpt" / "chatdoctor5k.json")
    assert dedupe(records).dropped == {}  # the generated set has no duplicates of its own
    rng = random.Random(1)
    exact = [
        Record(id=f"exact-{i}", source="copy", question=r.question.lower(), answer=r.answer + " ")
        for i, r in enumerate(rng.sample(records, 50))
    ]
    long_ones = [r for r in records if len(r.answer.split()) > 80]
    near = []
    for i, r in enumerate(rng.sample(long_ones, 50)):
        words = r.answer.split()
        words[len(words) // 2] = "indeed"
        near.append(Record(id=f"near-{i}", source="copy", question=r.question, answer=" ".join(words)))
    result = dedupe(records + exact + near)
    assert result.dropped["exact_duplicate"] == 50
    assert result.dropped["near_duplicate"] >= 45  # MinHash is an estimate: a rare miss is allowed
    assert result.by_source["exact_duplicate"] == {"copy (dup of chatdoctor5k)": 50}
    assert {r.id for r in result.records} >= {r.id for r in records}


@needs_shared
def test_real_medquad_has_repeated_answers():
    records = load_source("medquad", SHARED / "medquad" / "5_NIDDK_QA")
    result = dedupe(records)
    assert result.dropped["exact_duplicate"] > 0
    assert len(result.records) + sum(result.dropped.values()) == len(records)
