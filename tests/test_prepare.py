import json
from pathlib import Path

import pytest

from medtune.core.config import DataConfig, SourceConfig, load_config
from medtune.data import prepare as P
from medtune.data.errors import DataError
from medtune.data.templates import prompt_text, to_example

FIXTURE = Path(__file__).parent / "fixtures" / "qa_small.jsonl"
FIXTURES = Path(__file__).parent / "fixtures" / "data"


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
    src.write_text(
        "Q,A\nWhat is a cold?,A viral infection of the nose and throat that clears up by itself.\n"
        "What is flu?,An infection caused by influenza viruses with fever and aches.\n"
    )
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
    from medtune.core.models import load_tokenizer

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


def _bad_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A JSONL with one good row and one of each bad kind, and a MedQuAD folder with a broken XML."""
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_bytes(
        b"\n".join(
            [
                b'{"question": "What lowers a fever?", "answer": "Rest, fluids and paracetamol at the label dose."}',
                b'{"question": "unterminated',  # 2: malformed JSON
                b'{"question": "Is a rash serious?"}',  # 3: missing field
                b'{"question": "Why?", "answer": ["a", "list"]}',  # 4: wrong type
                b'{"question": "caf\xe9?", "answer": "bytes that are not UTF-8"}',  # 5: undecodable
                b'{"question": "   ", "answer": "An answer to nothing at all."}',  # 6: whitespace-only
            ]
        )
        + b"\n"
    )
    folder = tmp_path / "medquad" / "1_Test_QA"
    folder.mkdir(parents=True)
    (folder / "0000001.xml").write_text((FIXTURES / "medquad" / "1_TestGov_QA" / "0000001_1.xml").read_text())
    (folder / "0000002.xml").write_text('<?xml version="1.0"?>\n<Document id="2">\n<QAPairs>\n')
    return jsonl, tmp_path / "medquad"


def test_bad_input_raises_by_default_and_is_listed_in_the_card_under_skip(tmp_path):
    jsonl, medquad = _bad_inputs(tmp_path)
    sources = [SourceConfig(path=str(jsonl)), SourceConfig(kind="medquad", path=str(medquad))]
    with pytest.raises(DataError, match=r"qa.jsonl:2: malformed JSON"):
        P.prepare(DataConfig(sources=sources, eval_fraction=0))
    with pytest.raises(DataError, match=r"0000002.xml:\d+: XML does not parse"):
        P.prepare(DataConfig(sources=sources[1:], eval_fraction=0))

    prepared = P.prepare(DataConfig(sources=sources, eval_fraction=0, on_error="skip"))
    P.write(prepared, tmp_path / "out")
    card = json.loads((tmp_path / "out" / "data_card.json").read_text())
    markdown = (tmp_path / "out" / "data_card.md").read_text()
    qa, xml = card["sources"]
    assert qa["records_loaded"] == 1 and qa["skipped"]["total"] == 5
    reasons = qa["skipped"]["by_reason"]
    expected = {
        "record: malformed JSON": f"{jsonl}:2:",
        "answer: missing field": f"{jsonl}:3: field 'answer'",
        "answer: expected text, got list": f"{jsonl}:4: field 'answer'",
        "record: undecodable bytes": f"{jsonl}:5:",
        "question: empty or whitespace-only": f"{jsonl}:6: field 'question'",
    }
    for start, where in expected.items():
        reason = next(r for r in reasons if r.startswith(start))
        assert reasons[reason] == 1 and qa["skipped"]["examples"][reason][0].startswith(where), reason
        assert where in markdown, where
    (broken,) = [reason for reason in xml["skipped"]["by_reason"] if "XML does not parse" in reason]
    assert xml["skipped"]["by_reason"][broken] == 1, xml["skipped"]
    assert "0000002.xml" in markdown
    assert card["split"]["train"] == 1 + 2  # the good row and the parsed document's two pairs


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_empty_file_and_missing_path_stop_the_run_under_either_policy(tmp_path, policy):
    """A whole source that is missing or empty is a mistake in the config, not a row to skip."""
    (tmp_path / "empty.jsonl").write_text("")
    cases = ((tmp_path / "empty.jsonl", "empty.jsonl: file is empty"), (tmp_path / "nope.csv", "nope.csv: file does not exist"))
    for path, message in cases:
        with pytest.raises(DataError, match=message):
            P.prepare(DataConfig(sources=[SourceConfig(path=str(path))], on_error=policy))


def test_per_source_counts_add_up_with_cross_source_duplicates_and_repeats(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rows = [{"question": f"What is condition number {i}?", "answer": f"Condition {i} is in chapter {i} of the handbook."} for i in range(6)]
    a.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]) + json.dumps({"question": "Q?", "answer": "x"}) + "\n")
    b.write_text("".join(json.dumps(r) + "\n" for r in rows[2:]))  # rows 2, 3 also in a
    sources = [SourceConfig(path=str(a)), SourceConfig(path=str(b), count=5, replace=True)]
    cfg = DataConfig(sources=sources, min_answer_chars=5, eval_fraction=0)
    card = P.prepare(cfg).card
    steps = {st["name"]: st for st in card["steps"]}
    assert steps["quality_filter"]["sources"]["a"] == {"in": 5, "dropped": 1, "added": 0, "out": 4}
    assert steps["dedupe"]["sources"]["b"] == {"in": 4, "dropped": 2, "added": 0, "out": 2}
    assert steps["dedupe"]["by_source"]["exact_duplicate"] == {"b (dup of a)": 2}
    assert steps["mixture"]["sources"]["b"] == {"in": 2, "dropped": 0, "added": 3, "out": 5}
    for st in card["steps"]:
        for c in st["sources"].values():
            assert c["in"] - c["dropped"] + c["added"] == c["out"], st["name"]


def test_max_tokens_counts_with_the_models_tokenizer(tmp_path, base_model_dir):
    """`medtune prepare` with data.max_tokens counts real tokens of the base model (not characters / 4,
    which would keep 4 of these 14 records rather than 10), and the card says so."""
    import json

    from helpers import REPO
    from typer.testing import CliRunner

    from medtune.apps.cli import app
    from medtune.core.models import load_tokenizer
    from medtune.data.clean import _full_text
    from medtune.data.records import read_jsonl
    from medtune.data.sources import load_source

    src = REPO / "tests/fixtures/qa_small.jsonl"
    config = tmp_path / "tok.yaml"
    config.write_text(
        f"name: tok\noutput_dir: {tmp_path}\ndata:\n  sources: [{{kind: generic, path: {src}}}]\n  max_tokens: 36\n  eval_fraction: 0\n"
    )
    result = CliRunner().invoke(app, ["prepare", str(config)])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "tok/data/data_card.json").read_text())
    assert card["token_counts"] == str(base_model_dir)
    tok = load_tokenizer(str(base_model_dir))
    counts = {r.id: len(tok(_full_text(r), add_special_tokens=False)["input_ids"]) for r in load_source("generic", str(src))}
    kept = {r.id for r in read_jsonl(tmp_path / "tok/data/train.jsonl")}
    assert kept == {i for i, n in counts.items() if n <= 36}
    assert card["steps"][0]["dropped"]["too_many_tokens"] == sum(n > 36 for n in counts.values()) > 0
