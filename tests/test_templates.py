"""Templates: chat (the model's own template), alpaca and reasoning, with the persona system prompt;
reasoning is a separate field that the reasoning template renders in <think> and the others drop."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtune.core.config import DataConfig, SourceConfig, load_config
from medtune.data import prepare as P
from medtune.data.sources import load_source
from medtune.data.templates import prompt_text, to_example

FIXTURES = Path(__file__).parent / "fixtures" / "data"
SYSTEM = "You are a careful medical assistant."


@pytest.fixture(scope="module")
def o1():
    return load_source("reasoning", FIXTURES / "o1.jsonl")[1]


def test_reasoning_template_renders_think_and_the_others_drop_it(o1):
    assert o1.reasoning == "Peaked T waves are the earliest ECG sign of a high potassium level." and o1.answer == "Hyperkalaemia."
    reasoning = to_example(o1, "reasoning", SYSTEM)
    assert reasoning["prompt"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": o1.question}]
    assert reasoning["completion"] == [
        {"role": "assistant", "content": f"<think>\n{o1.reasoning}\n</think>\n\nHyperkalaemia."}
    ]
    chat = to_example(o1, "chat", SYSTEM)
    assert chat["prompt"] == reasoning["prompt"] and chat["completion"] == [{"role": "assistant", "content": "Hyperkalaemia."}]
    alpaca = to_example(o1, "alpaca", SYSTEM)
    assert alpaca == {
        "prompt": f"### System:\n{SYSTEM}\n\n### Instruction:\n{o1.question}\n\n### Response:\n",
        "completion": "Hyperkalaemia.",
    }
    assert "<think>" not in str(chat) + str(alpaca)


def test_without_a_persona_there_is_no_system_turn(o1):
    assert to_example(o1, "chat", None)["prompt"] == [{"role": "user", "content": o1.question}]
    assert to_example(o1, "alpaca", "")["prompt"] == f"### Instruction:\n{o1.question}\n\n### Response:\n"


def test_multi_turn_dialogue_trains_on_the_last_doctor_turn():
    record = next(r for r in load_source("notechat", FIXTURES / "notechat_turns.jsonl") if len(r.messages) > 2)
    chat = to_example(record, "chat", SYSTEM)
    assert chat["prompt"][1:] == record.messages[:-1] and chat["completion"][0] == record.messages[-1]
    alpaca = to_example(record, "alpaca", SYSTEM)
    assert f"User: {record.messages[0]['content']}\n" in alpaca["prompt"] and alpaca["completion"] == record.messages[-1]["content"]


def test_persona_and_template_come_from_config(tmp_path):
    source = f"data.sources=[{{kind: reasoning, path: {FIXTURES / 'o1.jsonl'}}}]"
    cfg = load_config(None, [source, "data.template=reasoning", f"data.system_prompt={SYSTEM}"])
    prepared = P.prepare(cfg.data.model_copy(update={"eval_fraction": 0.0}))
    assert prepared.card["template"] == "reasoning" and prepared.card["system_prompt"] == SYSTEM
    assert all(r.reasoning for r in prepared.train)  # kept as its own field in train.jsonl


def test_alpaca_generation_prompt_is_the_training_prompt(o1):
    assert prompt_text(None, [{"role": "user", "content": o1.question}], "alpaca", SYSTEM) == to_example(o1, "alpaca", SYSTEM)["prompt"]


def test_config_rejects_an_unknown_template():
    with pytest.raises(Exception, match="template"):
        DataConfig(sources=[SourceConfig(path="x.jsonl")], template="llama")


def test_rag_template_gold_among_distractors_or_distractors_only():
    """The record's own text among distractors (in one passage, or cut in two as an index cuts a long answer), or
    distractors only with the not-found target; every target sentence cites the passage that holds it."""
    import re

    from medtune.data.grounding import NOT_FOUND
    from medtune.data.records import Record
    from medtune.data.templates import examples_dataset

    records = [Record(id=f"r{i}", source="leaflets", question=f"What is condition {i}?",
                      answer=f"Condition {i} is a long-term illness. It is treated with medicine {i}.", meta={"focus": f"Condition {i}"})
               for i in range(40)]
    rows = examples_dataset(records, "rag", SYSTEM).to_list()
    assert rows == examples_dataset(records, "rag", SYSTEM).to_list()  # seeded by the record ids
    kinds = {"not found": 0, "one passage": 0, "two passages": 0}
    for record, row in zip(records, rows, strict=True):
        system, target = row["prompt"][0]["content"], row["completion"][0]["content"]
        assert system.startswith(SYSTEM) and row["prompt"][1] == {"role": "user", "content": record.question}
        passages = {n: (title, text) for n, title, text in re.findall(r"\[(\d)\] ([^\n]+)\n([^\n]+)", system.split("Sources:", 1)[1])}
        own = [n for n, (_, text) in passages.items() if text in record.answer]
        assert set(passages) == ({"1", "2", "3"} if own else {"1", "2"})  # k = 3 with the record's own text, 2 without
        if not own:
            assert target == NOT_FOUND
            kinds["not found"] += 1
            continue
        kinds["one passage" if len(own) == 1 else "two passages"] += 1
        cited = [(c.strip(), n) for c, n in re.findall(r"([^.]+?) \[(\d)\]\.", target)]
        assert [c for c, _ in cited] == [sentence.rstrip(".") for sentence in record.answer.split(". ")]
        for claim, number in cited:
            assert number in own and claim in passages[number][1]
    assert 0 < kinds["not found"] < len(rows) / 2 and all(kinds.values()), kinds
    none = examples_dataset(records, "rag", SYSTEM, not_found_share=0.0).to_list()  # data.rag_not_found_share: 0
    assert not any(row["completion"][0]["content"] == NOT_FOUND for row in none)
    every = examples_dataset(records, "rag", SYSTEM, not_found_share=1.0).to_list()
    assert all(row["completion"][0]["content"] == NOT_FOUND for row in every)
