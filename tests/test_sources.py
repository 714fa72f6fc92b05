"""Adapters in medtune.data.sources: fixtures in the published shapes (tests/fixtures/data), the real
corpora in ../shared/data when present, and every kind of bad input."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medtune.data.errors import DataError, SkipLog
from medtune.data.sources import SOURCES, chatdoctor, load_source, mcq, medquad, rows

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SHARED = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).parents[1].parent / "shared" / "data"))
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")
SRC = Path(__file__).parents[1] / "src"


# --- registry ------------------------------------------------------------------------------------


def test_every_source_has_the_adapter_interface():
    assert set(SOURCES) >= {
        "chatdoctor",
        "medquad",
        "medqa",
        "medmcqa",
        "pubmedqa",
        "mcq",
        "reasoning",
        "notechat",
        "flashcards",
        "generic",
    }
    for kind, module in SOURCES.items():
        assert isinstance(module.LICENSE, str) and module.LICENSE, kind
        assert isinstance(module.HUB_IDS, tuple), kind
        params = inspect.signature(module.load).parameters
        assert list(params)[0] == "path", kind
        for name in ("on_error", "skips", "limit"):
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (kind, name)


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown source kind 'healthcaremagic'.*chatdoctor.*medquad"):
        load_source("healthcaremagic", FIXTURES / "chatdoctor.json")


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match="unknown option.*strip_boilerplates"):
        load_source("chatdoctor", FIXTURES / "chatdoctor.json", strip_boilerplates=True)


def test_bad_on_error_policy_is_named():
    with pytest.raises(ValueError, match="on_error"):
        load_source("flashcards", FIXTURES / "flashcards.json", on_error="ignore")


# --- Hub path ------------------------------------------------------------------------------------


def _run_offline(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    code = "from medtune.data.sources import load_source; load_source('chatdoctor', 'medtune-tests/no-such-dataset')"  # never cached
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC), **env}, capture_output=True, text=True, timeout=60
    )
    return proc, time.monotonic() - started


def test_hub_unreachable_fails_fast_with_one_clear_line():
    # A closed local port stands for "no network", whatever this machine can reach.
    proc, seconds = _run_offline({"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        "DataError" in last and "cannot reach the Hugging Face Hub (offline?)" in last and "hf:medtune-tests/no-such-dataset/train" in last
    )
    assert seconds < 20


_EVERY_HUB_ID = """
import json, sys, time
from medtune.data.errors import DataError
from medtune.data.sources import SOURCES, load_source
for kind, module in SOURCES.items():
    for hub_id in module.HUB_IDS:
        started = time.monotonic()
        try:
            records = load_source(kind, hub_id, limit=1)
            outcome = "loaded %d" % len(records)
        except DataError as e:
            outcome = str(e)
        print(json.dumps({"kind": kind, "id": hub_id, "outcome": outcome, "s": time.monotonic() - started}))
"""


def _hub_ids_offline(env_changes: dict[str, str | None]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    for key, value in env_changes.items():
        env.pop(key, None) if value is None else env.__setitem__(key, value)
    proc = subprocess.run([sys.executable, "-c", _EVERY_HUB_ID], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    return rows._unreachable(constants.ENDPOINT) is None


@pytest.mark.parametrize(
    "env",
    [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": None, "HF_ENDPOINT": None}],
    ids=["HF_HUB_OFFLINE=1", "no-env"],
)
def test_every_adapter_takes_its_community_hub_ids_and_fails_fast_offline(env):
    """Every adapter's real Hub ids go through datasets.load_dataset; offline, each one is a
    one-line DataError naming the dataset, in seconds (with no variable set: no hanging retries)."""
    if env.get("HF_HUB_OFFLINE") is None and _hub_reachable():
        pytest.skip("the Hugging Face Hub is reachable from here; this test is for offline machines")
    results = _hub_ids_offline(env)
    expected = {(kind, hub_id) for kind, module in SOURCES.items() for hub_id in module.HUB_IDS}
    assert {(r["kind"], r["id"]) for r in results} == expected
    assert {"lavita/ChatDoctor-HealthCareMagic-100k", "lavita/ChatDoctor-iCliniq", "keivalya/MedQuad-MedicalQnADataset",
            "GBaker/MedQA-USMLE-4-options", "openlifescienceai/medmcqa", "qiaojin/PubMedQA",
            "FreedomIntelligence/medical-o1-reasoning-SFT", "akemiH/NoteChat",
            "medalpaca/medical_meadow_medical_flashcards"} <= {hub_id for _, hub_id in expected}  # fmt: skip
    for r in results:
        if r["outcome"].startswith("loaded"):  # a copy in the local datasets cache (HF_HUB_OFFLINE=1 reads it)
            continue
        assert r["outcome"].startswith(f"hf:{r['id']}/train: "), r
        expected_reason = "HF_HUB_OFFLINE is set" if env.get("HF_HUB_OFFLINE") else "cannot reach the Hugging Face Hub"
        assert expected_reason in r["outcome"], r
        assert "\n" not in r["outcome"] and r["s"] < 15, r


def test_hub_rows_use_the_same_mapping_as_local_rows(monkeypatch):
    # The Hub is unreachable here, so load_dataset hands back a real in-memory Dataset of the
    # fixture's rows; everything after it (row iteration, mapping, errors) is the real code path.
    import datasets

    fixture_rows = json.loads((FIXTURES / "chatdoctor.json").read_text())
    monkeypatch.setattr(rows, "_unreachable", lambda endpoint: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split="train": datasets.Dataset.from_list(fixture_rows))
    hub = load_source("chatdoctor", "lavita/ChatDoctor-HealthCareMagic-100k", strip_boilerplate=True)
    local = load_source("chatdoctor", FIXTURES / "chatdoctor.json", strip_boilerplate=True, source="ChatDoctor-HealthCareMagic-100k")
    assert [r.to_dict() for r in hub] == [r.to_dict() for r in local]


def test_missing_local_path_is_not_mistaken_for_a_hub_id(tmp_path):
    assert rows.is_hub_id("lavita/ChatDoctor-iCliniq")
    assert not rows.is_hub_id("data/train.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        load_source("flashcards", tmp_path / "nope" / "cards.json")


# --- ChatDoctor ----------------------------------------------------------------------------------


def test_chatdoctor_fixture():
    records = load_source("chatdoctor", FIXTURES / "chatdoctor.json")
    assert [r.id for r in records] == ["chatdoctor-1", "chatdoctor-2", "chatdoctor-3", "chatdoctor-4"]
    assert records[0].question.startswith("Hi Chat Doctor, I have had a dry cough")
    assert records[0].meta["instruction"].startswith("If you are a doctor")
    assert records[2].question == "Answer the patient's question."  # empty input: the instruction
    assert records[0].license == chatdoctor.LICENSE


def test_chatdoctor_strip_boilerplate_known_values():
    records = load_source("chatdoctor", FIXTURES / "chatdoctor.json", strip_boilerplate=True)
    assert records[0].question == "Hi doctor, I have had a dry cough for 3 weeks and mild fever in the evenings. What should I do?"
    assert records[0].answer == (
        "A dry cough lasting 3 weeks with evening fever needs a chest X-ray and a sputum test to rule out an infection.\n"
        "Please see a physician this week."
    )
    assert records[1].answer == (
        "A reading of 150/95 mmHg on two occasions suggests stage 2 hypertension. "
        "Reduce salt, walk 30 minutes daily and get a kidney function test."
    )
    assert records[3].answer.startswith("You may have a sprain") and "boilerplate" not in records[3].meta
    assert chatdoctor.boilerplate_counts(records) == {"records": 2, "greeting": 2, "signoff": 2, "platform": 2}


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Hi, your pressure is fine. Consult a Chat Doctor if it rises.", "Your pressure is fine. Consult a doctor if it rises."),
        (
            "Dear friend, I have gone through your question. It looks like gastritis. Thanks and regards, Dr. Mohan",
            "It looks like gastritis.",
        ),
        ("Based on your symptoms it is a cold. Rest for 2 weeks.", "Based on your symptoms it is a cold. Rest for 2 weeks."),
    ],
)
def test_chatdoctor_strip_keeps_the_medical_middle(answer, expected):
    assert chatdoctor.strip("q", answer)[1] == expected


def test_chatdoctor_answer_that_is_only_boilerplate_is_an_error(tmp_path):
    path = tmp_path / "hcm.json"
    path.write_text(json.dumps([{"instruction": "i", "input": "q", "output": "Thanks for using Chat Doctor."}]))
    with pytest.raises(DataError, match=r"hcm.json:1: field 'output' answer is only platform boilerplate"):
        load_source("chatdoctor", path, strip_boilerplate=True)


@needs_shared
def test_chatdoctor_real_genmedgpt():
    path = SHARED / "genmedgpt" / "chatdoctor5k.json"
    records = load_source("chatdoctor", path)
    assert len(records) == 5452
    assert len({r.id for r in records}) == len(records)
    assert [r.id for r in load_source("chatdoctor", path, limit=3)] == [r.id for r in records[:3]]
    stripped = load_source("chatdoctor", path, strip_boilerplate=True)
    assert 0 < chatdoctor.boilerplate_counts(stripped)["records"] < 100  # GenMedGPT is mostly clean
    assert all(r.answer for r in stripped)


# --- MedQuAD -------------------------------------------------------------------------------------


def test_medquad_xml_fixture_and_skipped_unanswered_pairs():
    skips = SkipLog()
    records = load_source("medquad", FIXTURES / "medquad", skips=skips)
    assert [r.id for r in records] == ["medquad-TestGov-0000001_1-1", "medquad-TestGov-0000001_1-2", "medquad-NINDS-0000003-1"]
    assert records[0].answer == (
        "Key Points\n\n- Pinkeye is an inflammation of the thin clear layer over the eye.\n- It is often caused by a virus.\n\n"
        "Pinkeye usually gets better on its own within two weeks."
    )
    assert records[0].meta == {
        "qid": "0000001_1-1",
        "qtype": "information",
        "focus": "Pinkeye",
        "collection": "TestGov",
        "url": "https://example.org/condition/pinkeye",
    }
    assert records[2].question == "what is restless legs syndrome ?"  # older <doc> schema
    assert skips.counts == {f"Answer: {medquad.NO_ANSWER}": 2, f"Answer: {medquad.EMPTY_ANSWER}": 1}
    assert "10_MPlus_ADAM_QA/0000002.xml:6" in skips.examples[f"Answer: {medquad.NO_ANSWER}"][0]


def test_medquad_xml_that_does_not_parse(tmp_path):
    folder = tmp_path / "1_Broken_QA"
    folder.mkdir()
    (folder / "0000001.xml").write_text((FIXTURES / "medquad" / "1_TestGov_QA" / "0000001_1.xml").read_text())
    (folder / "0000002.xml").write_text('<?xml version="1.0"?>\n<Document id="2">\n<Focus>Oops</Focus>\n<QAPairs>\n')
    with pytest.raises(DataError, match=r"1_Broken_QA/0000002.xml:\d+: XML does not parse"):
        load_source("medquad", tmp_path)
    skips = SkipLog()
    records = load_source("medquad", tmp_path, on_error="skip", skips=skips)
    assert len(records) == 2
    assert skips.total == 2 and any("XML does not parse" in reason for reason in skips.counts)


def test_medquad_wrong_root_and_empty_folder(tmp_path):
    (tmp_path / "a.xml").write_text("<html><body/></html>")
    with pytest.raises(DataError, match=r"a.xml:1: field 'Document' root element is <html>"):
        load_source("medquad", tmp_path / "a.xml")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no \\*.xml files"):
        load_source("medquad", empty)


def test_medquad_flat_rows_without_answers_are_counted_not_fatal(tmp_path):
    path = tmp_path / "medquad.jsonl"
    rows_ = [
        {"question": "What is X?", "answer": "X is a rare condition of the skin."},
        {"question": "What is Y?", "answer": None},
        {"question": "How to treat Y?", "answer": "  "},
    ]
    _write_jsonl(path, rows_)
    skips = SkipLog()
    records = load_source("medquad", path, skips=skips)  # on_error="raise": a known gap is still only counted
    assert [r.id for r in records] == ["medquad-1"]
    assert skips.counts == {f"answer: {medquad.EMPTY_ANSWER}": 2}
    assert skips.examples[f"answer: {medquad.EMPTY_ANSWER}"][0].endswith(f"medquad.jsonl:2: field 'answer' {medquad.EMPTY_ANSWER}")


def test_medquad_flat_csv():
    records = load_source("medquad", FIXTURES / "medquad_flat.csv")
    assert [(r.id, r.meta) for r in records] == [("medquad_flat-2", {"qtype": "symptoms"}), ("medquad_flat-3", {"qtype": "treatment"})]
    assert records[1].answer.startswith("Rest, ice")


@needs_shared
def test_medquad_real_medlineplus_folder_is_all_skips():
    skips = SkipLog()
    assert load_source("medquad", SHARED / "medquad" / "12_MPlusHerbsSupplements_QA", skips=skips) == []
    assert skips.counts[f"Answer: {medquad.NO_ANSWER}"] == skips.total > 0


@needs_shared
def test_medquad_real_collection():
    skips = SkipLog()
    records = load_source("medquad", SHARED / "medquad", skips=skips)
    assert 15_000 < len(records) < 17_000  # "~15k pairs with answers in 11 folders"
    assert len({r.id for r in records}) == len(records)
    assert skips.counts[f"Answer: {medquad.NO_ANSWER}"] > 30_000
    assert all(r.question and r.answer and "  " not in r.answer for r in records)


# --- MCQ: MedQA, MedMCQA, PubMedQA ---------------------------------------------------------------


def test_medqa_fixture_layout_and_answer_formats():
    records = load_source("medqa", FIXTURES / "medqa.jsonl")
    assert [r.id for r in records] == ["medqa-101", "medqa-102"]
    first, second = records
    assert first.question.endswith(
        "Which of the following is the most likely diagnosis?\n\n"
        "A. Medial tibial stress syndrome\nB. Osteosarcoma\nC. Compartment syndrome\nD. Achilles tendon rupture"
    )
    assert first.answer == "A"
    assert first.meta["task"] == "mcq" and first.meta["answer_idx"] == "A" and first.meta["meta_info"] == "step1"
    assert list(second.meta["options"]) == ["A", "B", "C", "D", "E"]
    assert load_source("medqa", FIXTURES / "medqa.jsonl", answer_format="letter_text")[1].answer == "C. Right coronary artery"
    # no explanation in MedQA: letter_explanation falls back to letter_text
    assert load_source("medqa", FIXTURES / "medqa.jsonl", answer_format="letter_explanation")[1].answer == "C. Right coronary artery"
    assert load_source("medqa", FIXTURES / "medqa.jsonl", answer_format="text")[1].answer == "Right coronary artery"
    with pytest.raises(ValueError, match="answer_format"):
        load_source("medqa", FIXTURES / "medqa.jsonl", answer_format="words")


def test_medmcqa_hub_shape_and_cop():
    records = load_source("medmcqa", FIXTURES / "medmcqa_hf.jsonl", answer_format="letter_explanation")
    assert [(r.id, r.meta["answer_idx"]) for r in records] == [("medmcqa_hf-mm-001", "A"), ("medmcqa_hf-mm-002", "D")]
    assert records[0].answer == "A. Chloroquine\n\nExplanation: Chloroquine remains effective against most vivax strains."
    assert records[1].answer == "D. Small intestine"  # exp is null
    assert records[0].meta["subject_name"] == "Pharmacology"
    one_based = load_source("medmcqa", FIXTURES / "medmcqa_hf.jsonl", cop_base=1, on_error="skip")
    assert [r.meta["answer_idx"] for r in one_based] == ["C"]  # cop=0 is out of range 1..4


def test_medmcqa_unkeyed_item_is_an_error(tmp_path):
    row = json.loads((FIXTURES / "medmcqa_hf.jsonl").read_text().splitlines()[0])
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps({**row, "cop": -1}) + "\n")
    with pytest.raises(DataError, match=r"test.jsonl:1: field 'cop' option index -1 out of range"):
        load_source("medmcqa", path)


def test_medmcqa_medagents_shape():
    (record,) = load_source("medmcqa", FIXTURES / "medmcqa.jsonl")
    assert record.id == "medmcqa-mm-x1" and record.answer == "A"


def test_pubmedqa_shapes_agree():
    ori = {r.id.split("-")[-1]: r for r in load_source("pubmedqa", FIXTURES / "pubmedqa_ori.json", answer_format="letter_explanation")}
    (lettered,) = load_source("pubmedqa", FIXTURES / "pubmedqa_lettered.jsonl", answer_format="letter_explanation")
    assert lettered.question == ori["900002"].question
    assert (
        lettered.answer
        == ori["900002"].answer
        == ("B. no\n\nExplanation: In this diary study coffee intake was not associated with how often migraines occurred.")
    )
    assert [ori[k].meta["answer_idx"] for k in ("900001", "900002", "900003")] == ["A", "B", "C"]


def test_pubmedqa_id_filters():
    ids = FIXTURES / "pubmedqa_test_ids.json"
    only, without = SkipLog(), SkipLog()
    assert [r.id for r in load_source("pubmedqa", FIXTURES / "pubmedqa_ori.json", only_ids=ids, skips=only)] == ["pubmedqa_ori-900002"]
    assert [r.id for r in load_source("pubmedqa", FIXTURES / "pubmedqa_ori.json", without_ids=ids, skips=without)] == [
        "pubmedqa_ori-900001",
        "pubmedqa_ori-900003",
    ]
    # what a filter leaves out is counted (for the data card), not an error and not silently gone
    assert only.left_out == {"not in only_ids (pubmedqa_test_ids.json)": 2} and only.total == 0
    assert without.left_out == {"in without_ids (pubmedqa_test_ids.json)": 1}
    reasoning = SkipLog()
    assert len(load_source("reasoning", FIXTURES / "pubmedqa_ori.json", without_ids=ids, skips=reasoning)) == 2
    assert reasoning.left_out == {"in without_ids (pubmedqa_test_ids.json)": 1}


def test_pubmedqa_context_conclusion_or_both(tmp_path):
    path = FIXTURES / "pubmedqa_ori.json"
    abstract, conclusion, both = (
        {r.id: r for r in load_source("pubmedqa", path, context=c)} for c in ("abstract", "conclusion", "both")
    )
    key = "pubmedqa_ori-900002"
    summary = "In this diary study coffee intake was not associated with how often migraines occurred."
    assert conclusion[key].meta["stem"] == f"{summary}\nIs coffee intake associated with migraine frequency?"
    assert both[key].meta["stem"] == abstract[key].meta["stem"].replace("\nIs coffee", f"\n{summary}\nIs coffee")
    assert summary not in abstract[key].meta["stem"]  # the default stays the paper's reasoning-required setting
    assert conclusion[key].answer == abstract[key].answer == "B"
    # the benchmark side takes the same option and keeps the conclusion as the item's context
    from medtune.core.config import MCQBenchmark
    from medtune.evaluate.mcq import load_benchmark

    bench = MCQBenchmark(name="p", kind="pubmedqa", path=str(path), options={"context": "conclusion"})
    item = {it.id: it for it in load_benchmark(bench)}[key]
    assert item.context == summary and item.question == "Is coffee intake associated with migraine frequency?"
    rows = json.loads(path.read_text())
    rows["900003"]["LONG_ANSWER"] = ""
    (tmp_path / "p.json").write_text(json.dumps(rows))
    with pytest.raises(DataError) as e:
        load_source("pubmedqa", tmp_path / "p.json", context="conclusion")
    assert e.value.field == "LONG_ANSWER" and "no conclusion" in str(e.value)
    assert len(load_source("pubmedqa", tmp_path / "p.json")) == 3  # the abstract setting does not need one
    with pytest.raises(DataError, match="context must be one of"):
        load_source("pubmedqa", path, context="summary")


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"answer_idx": "F"}, "answer_idx", "'F' is not one of the options A, B, C, D"),
        ({"answer": "Osteosarcoma"}, "answer", "does not match option A"),
        ({"options": "A or B"}, "options", "expected an object of lettered options, got str"),
        ({"options": {"A": "Only one"}}, "options", "expected at least 2 options"),
        ({"options": {"A": "x", "B": ""}}, "options.B", "option 'B' is empty"),
    ],
)
def test_mcq_bad_items(tmp_path, change, field, message):
    row = json.loads((FIXTURES / "medqa.jsonl").read_text().splitlines()[0])
    path = tmp_path / "medqa.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, **change}) + "\n")
    with pytest.raises(DataError) as e:
        load_source("medqa", path)
    assert (e.value.file, e.value.line, e.value.field) == (str(path), 2, field)
    assert message in str(e.value)


@needs_shared
@pytest.mark.parametrize(
    "kind, name, count, letters",
    [
        ("medqa", "medqa.test.jsonl", 1273, "ABCD"),
        ("medmcqa", "medmcqa.test.jsonl", 2816, "ABCD"),
        ("pubmedqa", "pubmedqa.test.jsonl", 500, "ABC"),
        ("pubmedqa", "pubmedqa.train.jsonl", 450, "ABC"),
    ],
)
def test_mcq_real_test_sets(kind, name, count, letters):
    records = load_source(kind, SHARED / "mcq" / name)
    assert len(records) == count and len({r.id for r in records}) == count
    assert all(r.answer == r.meta["answer_idx"] and "".join(r.meta["options"]) == letters for r in records)


@needs_shared
def test_pubmedqa_real_expert_set_matches_the_lettered_test_file():
    test_ids = SHARED / "pubmedqa" / "test_ground_truth.json"
    ori = load_source("pubmedqa", SHARED / "pubmedqa" / "ori_pqal.json", only_ids=test_ids)
    lettered = load_source("pubmedqa", SHARED / "mcq" / "pubmedqa.test.jsonl")
    by_id = {r.id.split("-")[-1]: r for r in ori}
    assert len(ori) == 500
    assert all(by_id[r.id.split("-")[-1]].question == r.question and by_id[r.id.split("-")[-1]].answer == r.answer for r in lettered)
    assert len(load_source("pubmedqa", SHARED / "pubmedqa" / "ori_pqal.json", without_ids=test_ids)) == 500


# --- reasoning, NoteChat, flashcards, generic ----------------------------------------------------


def test_reasoning_o1_shape():
    records = load_source("reasoning", FIXTURES / "o1.jsonl")
    assert records[0].reasoning.startswith("Fatigue, weight gain and cold intolerance")
    assert records[0].answer == "Primary hypothyroidism, most likely Hashimoto thyroiditis."
    assert records[1].id == "o1-2"


def test_reasoning_pubmedqa_as_chain_of_thought():
    records = load_source("reasoning", FIXTURES / "pubmedqa_ori.json", include_contexts=False)
    assert [(r.question, r.reasoning, r.answer) for r in records][1] == (
        "Is coffee intake associated with migraine frequency?",
        "In this diary study coffee intake was not associated with how often migraines occurred.",
        "no",
    )
    with_contexts = load_source("reasoning", FIXTURES / "pubmedqa_ori.json", shape="pubmedqa")
    assert with_contexts[0].question.startswith("Regular exercise is recommended") and with_contexts[0].license == "mit"


def test_reasoning_unknown_shape(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    with pytest.raises(DataError, match=r"x.jsonl:1: unknown shape \(fields: prompt, completion\)"):
        load_source("reasoning", path)


@needs_shared
def test_reasoning_real_pubmedqa():
    records = load_source("reasoning", SHARED / "pubmedqa" / "ori_pqal.json")
    assert len(records) == 1000 and {r.answer for r in records} == {"yes", "no", "maybe"}
    assert all(r.reasoning for r in records)


def test_notechat_text_and_turn_lists():
    skips = SkipLog()
    text = load_source("notechat", FIXTURES / "notechat.csv", on_error="skip", skips=skips, keep_note=True)
    assert [m["role"] for m in text[0].messages] == ["user", "assistant", "user", "assistant"]  # greeting and "Thank you." dropped
    assert text[0].messages[2]["content"] == "It goes to my left arm.\nIt stops after a few minutes of rest."
    assert text[0].question == "I've had chest pain for two days when I climb stairs."
    assert text[0].answer.startswith("That pattern sounds like angina.")
    assert text[0].meta["note"].startswith("A 45-year-old man")
    assert skips.total == 1 and "no patient turn followed by a doctor turn" in next(iter(skips.counts))
    turns = load_source("notechat", FIXTURES / "notechat_turns.jsonl")
    assert turns[0].messages[2] == {"role": "user", "content": "Yes, she is."}  # "Patient's mother:"
    assert turns[1].dialogue() == [
        {"role": "user", "content": "My knee hurts when I kneel."},
        {"role": "assistant", "content": "That sounds like prepatellar bursitis; avoid kneeling and use ice."},
    ]


def test_flashcards_fixture():
    records = load_source("flashcards", FIXTURES / "flashcards.json")
    assert [(r.id, r.answer) for r in records][1] == ("flashcards-2", "The median nerve.")
    assert records[0].meta == {"instruction": "Answer this question truthfully"}


def test_generic_question_answer_mode():
    generic = load_source("generic", FIXTURES / "generic.jsonl", question="prompt", answer="reply", id="uid")
    assert [(r.id, r.source, r.question[:22], r.answer[:14], r.license) for r in generic] == [
        ("g1", "generic", "How long should a teta", "About 10 years", "unknown"),
        ("g2", "generic", "Can I take ibuprofen w", "Better not: ib", "unknown"),
    ]
    assert [r.meta for r in generic] == [{"topic": "vaccines"}, {"topic": "drugs"}]  # scalar columns only: the chat list stays out


def test_generic_messages_mode():
    records = load_source("generic", FIXTURES / "generic.jsonl", messages="chat", id="uid")
    assert records[1].messages[0] == {"role": "system", "content": "You are a careful assistant."}
    assert (records[1].question, records[1].answer) == ("Is ibuprofen OK with an ulcer?", "Paracetamol is safer.")


def test_generic_bad_messages(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"chat": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}) + "\n")
    with pytest.raises(DataError, match=r"chat.jsonl:1: field 'chat\[1\].role' unknown role 'robot'"):
        load_source("generic", path, messages="chat")


def test_generic_same_rows_in_every_format_give_the_same_records(tmp_path):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows_ = [
        {"Q": "What is anaemia?", "A": "Too few red blood cells.", "key": "k1"},
        {"Q": "What is iron for?", "A": "Making haemoglobin.", "key": "k2"},
    ]
    _write_jsonl(tmp_path / "qa.jsonl", rows_)
    (tmp_path / "qa.json").write_text(json.dumps(rows_))
    with open(tmp_path / "qa.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["Q", "A", "key"])
        writer.writeheader(), writer.writerows(rows_)
    pq.write_table(pa.Table.from_pylist(rows_), tmp_path / "qa.parquet")
    loaded = {}
    for fmt in ("jsonl", "json", "csv", "parquet"):
        records = load_source("generic", tmp_path / f"qa.{fmt}", question="Q", answer="A", id="key")
        loaded[fmt] = [(r.id, r.source, r.question, r.answer) for r in records]
    assert loaded["jsonl"] == [(row["key"], "qa", row["Q"], row["A"]) for row in rows_]
    assert loaded["json"] == loaded["csv"] == loaded["parquet"] == loaded["jsonl"]


def test_generic_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "qa.parquet"
    pq.write_table(pa.table({"q": ["What is BMI?", "  "], "a": ["Weight in kg over height in m squared.", "x"]}), path)
    skips = SkipLog()
    records = load_source("generic", path, question="q", answer="a", on_error="skip", skips=skips)
    assert [r.id for r in records] == ["qa-1"]
    assert skips.counts == {"q: empty or whitespace-only": 1}


# --- bad input, for every adapter ----------------------------------------------------------------

GOOD_ROWS = {
    "chatdoctor": ({"instruction": "i", "input": "My head hurts.", "output": "Drink water and rest."}, "output"),
    "flashcards": ({"instruction": "i", "input": "What causes scurvy?", "output": "Vitamin C deficiency."}, "output"),
    "reasoning": ({"Question": "Q?", "Complex_CoT": "Think.", "Response": "A."}, "Response"),
    "medqa": ({"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A", "answer": "x"}, "question"),
    "medmcqa": ({"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 1}, "opb"),
    "pubmedqa": ({"QUESTION": "Q?", "CONTEXTS": ["c"], "final_decision": "yes", "LONG_ANSWER": "L"}, "final_decision"),
    "notechat": ({"conversation": "Patient: Hi, I have a cough.\nDoctor: Since when?"}, "conversation"),
    "generic": ({"question": "Q?", "answer": "A."}, "answer"),
    "medquad": ({"question": "Q?", "answer": "A.", "focus_area": "F"}, "question"),  # an empty answer is a counted gap (below)
}


def _write_jsonl(path: Path, lines: list) -> Path:
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines) + b"\n")
    return path


@pytest.mark.parametrize("kind", sorted(GOOD_ROWS))
def test_missing_field(tmp_path, kind):
    good, field = GOOD_ROWS[kind]
    path = _write_jsonl(tmp_path / "data.jsonl", [good, {k: v for k, v in good.items() if k != field}])
    with pytest.raises(DataError) as e:
        load_source(kind, path)
    assert (e.value.file, e.value.line, e.value.field) == (str(path), 2, field)
    assert f"data.jsonl:2: field '{field}'" in str(e.value)
    skips = SkipLog()
    assert len(load_source(kind, path, on_error="skip", skips=skips)) == 1 and skips.total == 1


@pytest.mark.parametrize("kind", sorted(GOOD_ROWS))
def test_wrong_type(tmp_path, kind):
    good, field = GOOD_ROWS[kind]
    path = _write_jsonl(tmp_path / "data.jsonl", [good, {**good, field: {"nested": True}}])
    with pytest.raises(DataError, match=rf"data.jsonl:2: field '{field}' expected") as e:
        load_source(kind, path)
    assert "dict" in str(e.value)


@pytest.mark.parametrize("kind", sorted(GOOD_ROWS))
def test_empty_value(tmp_path, kind):
    good, field = GOOD_ROWS[kind]
    path = _write_jsonl(tmp_path / "data.jsonl", [good, {**good, field: "   "}])
    with pytest.raises(DataError, match=rf"data.jsonl:2: field '{field}'"):
        load_source(kind, path)


@pytest.mark.parametrize("kind", sorted(GOOD_ROWS))
def test_malformed_json_line_and_undecodable_bytes(tmp_path, kind):
    good, _ = GOOD_ROWS[kind]
    path = _write_jsonl(tmp_path / "data.jsonl", [good, b'{"question": "unterminated', b'{"x": "caf\xe9"}', good])
    with pytest.raises(DataError, match=r"data.jsonl:2: malformed JSON"):
        load_source(kind, path)
    skips = SkipLog()
    records = load_source(kind, path, on_error="skip", skips=skips)
    assert len(records) == 2 and skips.total == 2
    assert any("undecodable bytes" in reason for reason in skips.counts)
    assert any("data.jsonl:3:" in example for shown in skips.examples.values() for example in shown)


def test_undecodable_json_file_names_the_line(tmp_path):
    path = tmp_path / "cards.json"
    path.write_bytes(b'[\n{"input": "q", "output": "a"},\n{"input": "caf\xe9", "output": "a"}\n]')
    with pytest.raises(DataError, match=r"cards.json:3: undecodable bytes"):
        load_source("flashcards", path)


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_empty_file_and_missing_path(tmp_path, kind):
    empty = tmp_path / ("data.xml" if kind == "medquad" else "data.jsonl")
    empty.write_text("")
    with pytest.raises(DataError, match="data\\.(jsonl|xml)"):
        load_source(kind, empty)
    with pytest.raises(DataError, match="does not exist"):
        load_source(kind, tmp_path / "missing.jsonl")


def test_limit_and_deterministic_ids():
    first = load_source("chatdoctor", FIXTURES / "chatdoctor.json", limit=2)
    again = load_source("chatdoctor", FIXTURES / "chatdoctor.json")
    assert [r.id for r in first] == [r.id for r in again[:2]]


def test_mcq_generic_module_reads_medagents_files():
    records = mcq.load(str(FIXTURES / "medqa.jsonl"), source="bench")
    assert [r.id for r in records] == ["bench-101", "bench-102"]


def test_reasoning_missing_chain_of_thought_is_named(tmp_path):
    path = tmp_path / "o1.jsonl"
    path.write_text(json.dumps({"Question": "Q?", "Response": "A."}) + "\n")
    with pytest.raises(DataError, match=r"o1.jsonl:1: field 'Complex_CoT' missing field"):
        load_source("reasoning", path)
