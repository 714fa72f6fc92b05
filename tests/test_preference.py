"""Preference data: the 'preference' source adapter in every shape it reads, bad rows located or counted,
and the TRL examples built from the records."""

from __future__ import annotations

import json

import pytest
from helpers import REPO

from medtune.data.errors import DataError, SkipLog
from medtune.data.sources import load_source
from medtune.data.templates import preference_dataset, to_preference_example

PREFS = REPO / "tests" / "fixtures" / "prefs_small.jsonl"


def write(tmp_path, rows, name="p.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generic_prompt_chosen_rejected():
    records = load_source("preference", str(PREFS))
    assert len(records) == 8
    r = records[0]
    assert r.question.startswith("My dad suddenly") and r.answer.startswith("Call 911") and r.rejected.startswith("Stroke symptoms")
    assert r.dialogue() == [{"role": "user", "content": r.question}, {"role": "assistant", "content": r.answer}]


def test_prompt_as_messages_and_ultrafeedback_lists(tmp_path):
    rows = [
        {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Is tea ok?"}],
         "chosen": "Yes, in moderation.", "rejected": "No."},
        {"prompt": "What helps a cough?",  # UltraFeedback-binarized: full message lists that repeat the prompt
         "chosen": [{"role": "user", "content": "What helps a cough?"}, {"role": "assistant", "content": "Honey and fluids."}],
         "rejected": [{"role": "user", "content": "What helps a cough?"}, {"role": "assistant", "content": "I can't help."}]},
    ]
    first, second = load_source("preference", str(write(tmp_path, rows)))
    assert [t["role"] for t in first.messages] == ["user", "assistant", "user", "assistant"] and first.question == "Hi"
    assert (first.answer, first.rejected) == ("Yes, in moderation.", "No.")
    assert second.messages == [{"role": "user", "content": "What helps a cough?"}, {"role": "assistant", "content": "Honey and fluids."}]
    assert second.rejected == "I can't help."


def test_anthropic_hh_dialogues(tmp_path):
    shared = "\n\nHuman: My knee hurts after running.\n\nAssistant: Since when?\n\nHuman: Two days."
    rows = [{"chosen": shared + "\n\nAssistant: Rest it, ice it, and see a doctor if it swells.",
             "rejected": shared + "\n\nAssistant: Keep running through it."}]
    (r,) = load_source("preference", str(write(tmp_path, rows)))
    assert [t["content"] for t in r.messages[:-1]] == ["My knee hurts after running.", "Since when?", "Two days."]
    assert r.answer.startswith("Rest it") and r.rejected == "Keep running through it."


@pytest.mark.parametrize("row, field, message", [
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "rejected", "the same"),
    ({"prompt": "q", "chosen": "a"}, "rejected", "missing field"),
    ({"chosen": "a", "rejected": "b"}, "prompt", "missing field"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "q"}], "rejected": "b"}, "chosen", "assistant"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: other\n\nAssistant: y"}, "rejected", "different conversations"),
])
def test_bad_rows_name_file_line_field_or_are_counted(tmp_path, row, field, message):
    path = write(tmp_path, [{"prompt": "ok", "chosen": "good", "rejected": "bad"}, row])
    with pytest.raises(DataError) as err:
        load_source("preference", str(path))
    assert (err.value.line, err.value.field) == (2, field) and message in err.value.message and str(path) in str(err.value)
    skips = SkipLog()
    assert len(load_source("preference", str(path), on_error="skip", skips=skips)) == 1 and skips.total == 1


def test_preference_examples_for_trl():
    records = load_source("preference", str(PREFS))
    ex = to_preference_example(records[0], "chat", "Be careful.")
    assert ex["prompt"] == [{"role": "system", "content": "Be careful."}, {"role": "user", "content": records[0].question}]
    assert ex["chosen"] == [{"role": "assistant", "content": records[0].answer}]
    assert ex["rejected"] == [{"role": "assistant", "content": records[0].rejected}]
    assert preference_dataset(records, "alpaca", None)[0]["rejected"] == records[0].rejected
    sft_record = load_source("generic", str(REPO / "tests/fixtures/qa_small.jsonl"))[0]
    with pytest.raises(ValueError, match="no rejected answer"):
        to_preference_example(sft_record, "chat", None)
