"""medtune.data.clean: StepResult, quality_filter, scrub_pii."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medtune.data.clean import StepResult, looks_english, quality_filter, scrub_pii, scrub_text
from medtune.data.records import Record
from medtune.data.sources import load_source

SHARED = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).parents[1].parent / "shared" / "data"))
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")

LONG_ANSWER = "Rest, drink plenty of fluids and take paracetamol for the fever; see a doctor if it lasts more than 3 days."


def rec(id: str, question: str = "I have had a fever since yesterday. What should I do?", answer: str = LONG_ANSWER, **kw) -> Record:
    return Record(id=id, source=kw.pop("source", "test"), question=question, answer=answer, **kw)


# --- quality_filter ------------------------------------------------------------------------------


def test_quality_filter_reasons_and_counts():
    records = [
        rec("ok"),
        rec("no-q", question="   "),
        rec("no-a", answer="\n\t "),
        rec("short-q", question="Fever?"),
        rec("short-a", answer="Rest."),
        rec("long-a", answer="word " * 400),
        rec("empty-turn", messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " "}]),
    ]
    result = quality_filter(records, min_question_chars=10, min_answer_chars=20, max_answer_chars=1000)
    assert [r.id for r in result.records] == ["ok"]
    assert result.dropped == {
        "empty_question": 1,
        "empty_answer": 2,
        "short_question": 1,
        "short_answer": 1,
        "long_answer": 1,
    }
    assert result.examples["empty_answer"] == ["no-a", "empty-turn"]
    assert result.by_source == {reason: {"test": n} for reason, n in result.dropped.items()}
    assert records[1].question == "   "  # inputs untouched


def test_quality_filter_tokens_estimated_and_with_a_tokenizer():
    records = [rec("prose"), rec("one-long-word", answer="x" * 4000), rec("many-words", answer="word " * 100)]
    estimated = quality_filter(records, max_tokens=500)  # ~len/4 tokens without a tokenizer
    assert [r.id for r in estimated.records] == ["prose", "many-words"]

    def words_tokenizer(texts, add_special_tokens=False):  # the call shape of a Hugging Face tokenizer
        return {"input_ids": [t.split() for t in texts]}

    result = quality_filter(records, max_tokens=50, tokenizer=words_tokenizer)
    assert [r.id for r in result.records] == ["prose", "one-long-word"]
    assert result.dropped == {"too_many_tokens": 1} and result.examples["too_many_tokens"] == ["many-words"]


def test_quality_filter_with_a_real_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()

    def hf_like(texts, add_special_tokens=False):
        return {"input_ids": [e.ids for e in tok.encode_batch(texts, add_special_tokens=add_special_tokens)]}

    result = quality_filter([rec("a"), rec("b", answer="word " * 100)], max_tokens=50, tokenizer=hf_like)
    assert [r.id for r in result.records] == ["a"]


def test_language_heuristic():
    assert looks_english("The patient has a fever and a cough for two days, and the chest X-ray is clear of any shadow.")
    assert looks_english("Take metformin 500 mg, amlodipine 5 mg, atorvastatin 20 mg, aspirin 75 mg, pantoprazole 40 mg daily now")
    assert not looks_english("У пациента температура и кашель в течение двух дней, рентген грудной клетки чистый.")
    assert not looks_english("患者发烧咳嗽两天")
    assert not looks_english(
        "El paciente tiene fiebre y tos desde hace dos días; la radiografía de tórax es normal y "
        "los análisis de sangre muestran leucocitos elevados con neutrofilia leve pero sin otros hallazgos relevantes hoy"
    )
    records = [rec("en"), rec("ru", answer="Отдыхайте, пейте больше жидкости и принимайте парацетамол при температуре.")]
    result = quality_filter(records, language="en")
    assert result.dropped == {"language": 1} and result.records[0].id == "en"
    with pytest.raises(ValueError, match="language"):
        quality_filter(records, language="fr")


# --- scrub_pii -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected, kinds",
    [
        ("Mail me at john.doe+x@gmail.com today.", "Mail me at [EMAIL] today.", {"email": 1}),
        ("See https://www.example.com/page?id=3. Or www.example.org", "See [URL]. Or [URL]", {"url": 2}),
        ("Visit healthcaremagic.com for more.", "Visit [URL] for more.", {"url": 1}),
        ("Call 555-123-4567 or +91 98765 43210 or 9876543210.", "Call [PHONE] or [PHONE] or [PHONE].", {"phone": 3}),
        ("My phone: 020 7946 0958, any time.", "My phone: [PHONE], any time.", {"phone": 1}),
        ("Hi Mr. Khan, your reports are fine.", "Hi Mr. [NAME], your reports are fine.", {"name": 1}),
        ("Dear Ms Smith, please rest.", "Dear Ms [NAME], please rest.", {"name": 1}),
        ("Dear Miss Smith, please rest.", "Dear [NAME], please rest.", {"name": 1}),
        ("Hi John, thanks for asking.", "Hi [NAME], thanks for asking.", {"name": 1}),
        ("Take care. Regards, Dr. Rakesh Kumar", "Take care. Regards, Dr. [NAME]", {"name": 1}),
        ("Thanks, John", "Thanks, [NAME]", {"name": 1}),
        ("Regards,\nAnna", "Regards,\n[NAME]", {"name": 1}),
    ],
)
def test_scrub_known_values(text, expected, kinds):
    assert scrub_text(text) == (expected, kinds)


@pytest.mark.parametrize(
    "text",
    [
        "BP 120/80 mmHg, HbA1c 5.7%, for 2 weeks, 1500-2000 mg daily.",
        "Dates 12/03/2020 and 2020-01-15; WBC 4.5 - 11.0 x10^9/L; platelets 150000; temp 38.5 C; dose 0.5-1 mg.",
        "Hi Doctor, I have pain.",
        "Hello, I am 32 years old and weigh 70 kg.",
        "Thanks, Doctor",
        "Thank you. Please take paracetamol 500 mg every 6 hours.",
        "Hello Welcome to the forum",
        "My husband has MS since 2019.",
        "Tablets.In the morning take 1 tab.",
        "Screening Guidelines: Will We Miss Cancers Following the New Rules?",
    ],
)
def test_scrub_leaves_medical_text_alone(text):
    assert scrub_text(text) == (text, {})


def test_scrub_pii_records_counts_and_messages():
    records = [
        rec("clean"),
        rec("mail", answer="Send the report to dr.rao@example.com. Regards, Dr. Rao"),
        rec(
            "chat",
            question="Hi Doctor, my number is 98765 43210.",
            answer="Noted.",
            messages=[{"role": "user", "content": "Hi Doctor, my number is 98765 43210."}, {"role": "assistant", "content": "Noted."}],
        ),
    ]
    result = scrub_pii(records)
    assert isinstance(result, StepResult) and not result.dropped
    assert result.records[0] is records[0]  # unchanged records pass through as they are
    assert result.records[1].answer == "Send the report to [EMAIL]. Regards, Dr. [NAME]"
    assert result.records[2].question == result.records[2].messages[0]["content"] == "Hi Doctor, my number is [PHONE]."
    assert result.changed == {"records": 2, "email": 1, "name": 1, "phone": 1}  # the repeated turn counts once
    assert result.examples == {"email": ["mail"], "name": ["mail"], "phone": ["chat"]}
    assert records[1].answer.startswith("Send the report to dr.rao@")  # inputs untouched


@needs_shared
def test_scrub_real_genmedgpt_changes_little():
    records = load_source("chatdoctor", SHARED / "genmedgpt" / "chatdoctor5k.json")
    result = scrub_pii(records)
    assert len(result.records) == len(records)
    assert result.changed["records"] < 0.01 * len(records)  # generated dialogues hold next to no PII


def test_step_result_to_dict():
    result = quality_filter([rec("a"), rec("b", answer="")])
    assert result.to_dict() == {
        "kept": 1,
        "dropped": {"empty_answer": 1},
        "changed": {},
        "examples": {"empty_answer": ["b"]},
        "by_source": {"empty_answer": {"test": 1}},
    }
