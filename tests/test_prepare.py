import json
from pathlib import Path

import pytest

from medtune.config import DataConfig, SourceConfig, load_config
from medtune.data import prepare as P
from medtune.data.errors import DataError
from medtune.data.templates import prompt_text, to_example

FIXTURE = Path(__file__).parent / "fixtures" / "qa_small.jsonl"


def test_builtin_starter_set_is_big_and_covers_safety():
    cfg = DataConfig()
    prepared = P.prepare(cfg)
    records = prepared.train + prepared.eval
    assert len(records) >= 150
    cats = {r.meta.get("category") for r in records}
    assert {"condition", "medication", "test", "safety"} <= cats
    assert all(r.license.startswith("Apache-2.0") for r in records)


def test_split_is_deterministic_and_stable(tmp_path):
    cfg = DataConfig(sources=[SourceConfig(path=str(FIXTURE))], eval_fraction=0.3)
    a, b = P.prepare(cfg), P.prepare(cfg)
    assert [r.id for r in a.eval] == [r.id for r in b.eval] and a.eval
    assert not {r.id for r in a.train} & {r.id for r in a.eval}
    # a record's side of the split depends on its id only, not on what else is in the set
    assert all(P.stable_fraction(cfg.seed, f"{r.source}/{r.id}") < 0.3 for r in a.eval)
    other = P.prepare(cfg.model_copy(update={"seed": 7}))
    assert [r.id for r in other.eval] != [r.id for r in a.eval]


def test_field_mapping_and_card(tmp_path):
    src = tmp_path / "qa.csv"
    src.write_text("Q,A\nWhat is a cold?,A viral infection of the nose and throat that clears up by itself.\nWhat is flu?,An infection caused by influenza viruses with fever and aches.\n")
    cfg = DataConfig(sources=[SourceConfig(path=str(src), fields={"question": "Q", "answer": "A", "id": "Q"})], eval_fraction=0.0)
    prepared = P.prepare(cfg)
    assert [r.question for r in prepared.train] == ["What is a cold?", "What is flu?"]
    P.write(prepared, tmp_path / "out")
    card = json.loads((tmp_path / "out" / "data_card.json").read_text())
    assert card["sources"][0]["records_loaded"] == 2 and card["split"]["train"] == 2
    assert [s["name"] for s in card["steps"]][:2] == ["quality_filter", "dedupe"]
    assert (tmp_path / "out" / "data_card.md").read_text().startswith("# Data card")


def test_bad_row_is_an_error_naming_file_line_field(tmp_path):
    src = tmp_path / "qa.jsonl"
    src.write_text('{"question": "ok?", "answer": "fine answer"}\n{"question": "no answer"}\n')
    with pytest.raises(DataError) as e:
        P.prepare(DataConfig(sources=[SourceConfig(path=str(src))]))
    assert str(src) in str(e.value) and ":2" in str(e.value) and "answer" in str(e.value)
    prepared = P.prepare(DataConfig(sources=[SourceConfig(path=str(src))], on_error="skip", eval_fraction=0))
    assert len(prepared.train) == 1
    assert prepared.card["sources"][0]["skipped"]["total"] == 1


def test_chat_example_masks_are_set_up_and_prompt_matches_training(base_model_dir):
    from medtune.models import load_tokenizer

    tok = load_tokenizer(str(base_model_dir))
    record = P.prepare(DataConfig(sources=[SourceConfig(path=str(FIXTURE))], eval_fraction=0)).train[0]
    ex = to_example(record, "chat", "SYS")
    assert ex["prompt"][0] == {"role": "system", "content": "SYS"} and ex["completion"][0]["role"] == "assistant"
    prompt = prompt_text(tok, record.dialogue()[:-1], "chat", "SYS")
    full = tok.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=False)
    assert full.startswith(prompt), "the generation prompt must be a prefix of the training text"
    alpaca = to_example(record, "alpaca", "SYS")
    assert alpaca["prompt"].startswith("### System:\nSYS") and alpaca["prompt"].endswith("### Response:\n")


def test_config_sources_from_yaml(tmp_path):
    cfg = load_config(None, [f"data.sources=[{{kind: generic, path: {FIXTURE}}}]"])
    assert cfg.data.sources[0].path == str(FIXTURE)
