"""Mixtures by weight, count, fraction and total; replay of an earlier stage; the length plot.
Small invented files only (written per test), so every test runs in well under a second."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from medtune.core.config import ConfigError, DataConfig, SourceConfig, load_config
from medtune.data import prepare as P
from medtune.data.errors import DataError

WORDS = "fever cough rest fluids doctor dose tablet infection pain sleep water heart lung skin blood test".split()


def qa_file(tmp_path: Path, name: str, n: int) -> str:
    """``n`` invented records of source ``name`` (answers of 5 to 60 words)."""
    rng = random.Random(name)
    path = tmp_path / f"{name}.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
            f.write(json.dumps({"id": f"{name}-{i}", "question": f"Question {i} about {name}?", "answer": answer}) + "\n")
    return str(path)


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    return {name: qa_file(tmp_path, name, n) for name, n in (("a", 100), ("b", 50), ("c", 30))}


def data(sources: list[SourceConfig], **kw) -> DataConfig:
    return DataConfig(sources=sources, **{"eval_fraction": 0.0, "dedupe": False, **kw})


def used(prepared: P.Prepared) -> Counter:
    return Counter(r.source for r in prepared.train + prepared.eval)


def assert_steps_add_up(card: dict) -> None:
    for st in card["steps"]:
        added = sum(st.get("added", {}).values())
        assert st["records_out"] == st["records_in"] - sum(st["dropped"].values()) + added, st["name"]


def test_weights_without_total_make_the_largest_mixture_that_repeats_nothing(files):
    cfg = data([SourceConfig(path=files["a"], weight=2), SourceConfig(path=files["b"], weight=1), SourceConfig(path=files["c"], weight=1)])
    prepared = P.prepare(cfg)
    assert used(prepared) == {"a": 60, "b": 30, "c": 30}  # c (30 records) is the scarcest: taken whole
    card = prepared.card
    assert [s["records_loaded"] for s in card["sources"]] == [100, 50, 30]
    assert [s["asked"] for s in card["sources"]] == [{"weight": 2.0}, {"weight": 1.0}, {"weight": 1.0}]
    assert [s["records_used"] for s in card["sources"]] == [60, 30, 30]
    assert [s["share_used"] for s in card["sources"]] == [0.5, 0.25, 0.25]
    mixture = next(st for st in card["steps"] if st["name"] == "mixture")
    assert mixture["dropped"] == {"not_sampled": 60} and mixture["by_source"]["not_sampled"] == {"a": 40, "b": 20}
    assert_steps_add_up(card)


def test_total_is_shared_by_weight_and_asking_too_much_names_the_source(files):
    sources = [SourceConfig(path=files["a"], weight=1), SourceConfig(path=files["b"], weight=1)]
    assert used(P.prepare(data(sources, total=80))) == {"a": 40, "b": 40}
    with pytest.raises(DataError, match=r"b\.jsonl.*data\.sources\[1\].*asks for 60.*only 50.*replace"):
        P.prepare(data(sources, total=120))


def test_replace_repeats_records_and_copies_follow_their_original(files):
    sources = [SourceConfig(path=files["a"], weight=1), SourceConfig(path=files["b"], weight=1, replace=True)]
    prepared = P.prepare(data(sources, total=120, eval_fraction=0.3))
    records = prepared.train + prepared.eval
    assert used(prepared) == {"a": 60, "b": 60}
    copies = [r for r in records if "copy_of" in r.meta]
    assert len(copies) == 10 and all(r.id == f"{r.meta['copy_of']}#2" for r in copies)
    assert len({r.id for r in records}) == len(records)
    held = {r.id for r in prepared.eval}
    assert all((r.meta["copy_of"] in held) == (r.id in held) for r in copies), "a copy must sit on its original's side"
    mixture = next(st for st in prepared.card["steps"] if st["name"] == "mixture")
    assert mixture["added"] == {"repeated": 10}
    assert prepared.card["sources"][1]["asked"] == {"weight": 1.0, "replace": True}
    assert_steps_add_up(prepared.card)


def test_count_mixes_with_weights(files):
    sources = [SourceConfig(path=files["a"], count=10), SourceConfig(path=files["b"], weight=1), SourceConfig(path=files["c"], weight=1)]
    assert used(P.prepare(data(sources, total=50))) == {"a": 10, "b": 20, "c": 20}  # weights share 50 - 10
    assert used(P.prepare(data(sources))) == {"a": 10, "b": 30, "c": 30}  # weights among weighted sources only
    whole = [SourceConfig(path=files["a"]), SourceConfig(path=files["c"], weight=1)]
    assert used(P.prepare(data(whole, total=130))) == {"a": 100, "c": 30}  # a source without a share counts whole
    with pytest.raises(ValueError, match="data.total=100 leaves no records"):
        P.prepare(data(whole, total=100))
    capped = P.prepare(data([SourceConfig(path=files["c"], count=500)]))
    assert used(capped) == {"c": 30} and capped.card["sources"][0]["asked"] == {"count": 500}


def test_where_splits_one_file_into_sources_with_their_own_shares(tmp_path):
    """The built-in safety pairs carry a ``category``: each class its own count, the rest counted as left out."""
    pairs = tmp_path / "pairs.jsonl"
    with open(pairs, "w") as f:
        for i in range(40):
            category = ("benign", "prescription", "harmful", "crisis")[i % 4]
            f.write(json.dumps({"id": f"p{i}", "category": category, "prompt": f"Question {i} on {category}?",
                                "chosen": f"A careful answer {i} about {category} and a doctor.", "rejected": f"A bad answer {i}."}) + "\n")
    sources = [SourceConfig(kind="preference", path=str(pairs), where={"category": ["prescription"]}, count=8),
               SourceConfig(kind="preference", path=str(pairs), where={"category": ["benign", "harmful"]}, count=6)]
    prepared = P.prepare(data(sources), rejected=True)
    kept = Counter(r.meta["category"] for r in prepared.train)
    assert kept["prescription"] == 8 and kept["benign"] + kept["harmful"] == 6 and "crisis" not in kept
    card = prepared.card["sources"]
    assert [s["records_loaded"] for s in card] == [10, 20]
    assert [s["skipped"]["left_out"] for s in card] == [{"not category in prescription": 30}, {"not category in benign/harmful": 20}]
    assert card[0]["asked"] == {"count": 8, "where": "category in prescription"}
    markdown = P.card_markdown(prepared.card)
    assert "0 (+30 left out)" in markdown and f"left out of {pairs} on purpose (not category in prescription): 30" in markdown
    for where, message in (({"categry": ["benign"]}, "no record has the field 'categry'"), ({"category": ["Benign"]}, "no record matches")):
        with pytest.raises(ValueError, match=message):
            P.prepare(data([SourceConfig(kind="preference", path=str(pairs), where=where)]), rejected=True)


def test_sampling_is_seeded_per_source(files):
    cfg = data([SourceConfig(path=files["a"], count=20), SourceConfig(path=files["b"], weight=1)])
    first, again = P.prepare(cfg), P.prepare(cfg)
    assert [r.id for r in first.train] == [r.id for r in again.train]
    other = P.prepare(cfg.model_copy(update={"seed": 7}))
    assert {r.id for r in other.train} != {r.id for r in first.train}
    more = P.prepare(data(cfg.sources + [SourceConfig(path=files["c"], count=5)]))
    assert [r.id for r in more.train if r.source == "a"] == [r.id for r in first.train if r.source == "a"]
    ids = [int(r.id.split("-")[1]) for r in first.train if r.source == "a"]
    assert ids == sorted(ids), "sampled records keep their input order"



def test_the_same_config_draws_the_same_mixture_wherever_the_data_lies(tmp_path, files):
    """The sample is seeded by the file's name, not its absolute path (a checkout or CI clone elsewhere)."""
    import shutil

    moved = tmp_path / "elsewhere" / "deeper"
    moved.mkdir(parents=True)
    copies = {k: str(shutil.copy(v, moved / Path(v).name)) for k, v in files.items()}
    here = P.prepare(data([SourceConfig(path=files["a"], count=20), SourceConfig(path=files["b"], count=7)]))
    there = P.prepare(data([SourceConfig(path=copies["a"], count=20), SourceConfig(path=copies["b"], count=7)]))
    assert [r.id for r in here.train] == [r.id for r in there.train] and [r.id for r in here.eval] == [r.id for r in there.eval]

@pytest.fixture
def stage1(tmp_path, files) -> tuple[Path, P.Prepared]:
    prepared = P.prepare(data([SourceConfig(path=files["a"], license="cc-by-4.0"), SourceConfig(path=files["b"])], eval_fraction=0.2))
    P.write(prepared, tmp_path / "stage1" / "data")
    return tmp_path / "stage1", prepared


def test_replay_samples_the_earlier_training_mixture(stage1, files):
    run, earlier = stage1
    by_id = {r.id: r for r in earlier.train}
    for path in (run, run / "data", run / "data" / "train.jsonl"):
        cfg = data([SourceConfig(path=files["c"]), SourceConfig(kind="replay", path=str(path), count=25)], eval_fraction=0.5)
        prepared = P.prepare(cfg)
        replayed = [r for r in prepared.train + prepared.eval if r.meta.get("replay")]
        assert len(replayed) == 25 and all(r in prepared.train for r in replayed), "replayed records always train"
        for r in replayed:
            original = by_id[r.id]
            assert (r.source, r.license, r.answer) == (original.source, original.license, original.answer)
    card = prepared.card["sources"][1]
    assert card["kind"] == "replay" and card["records_loaded"] == len(earlier.train) and card["records_used"] == 25
    assert any(group.endswith("(replay)") for group in prepared.card["answer_words"])


def test_replay_fraction_is_a_share_of_the_earlier_mixture(stage1, files):
    run, earlier = stage1
    prepared = P.prepare(data([SourceConfig(path=files["c"]), SourceConfig(kind="replay", path=str(run), fraction=0.5)]))
    assert sum(r.meta.get("replay", False) for r in prepared.train) == round(0.5 * len(earlier.train))


def test_replay_without_train_jsonl_is_a_clear_error(tmp_path, files):
    (tmp_path / "empty_run").mkdir()
    cfg = data([SourceConfig(path=files["c"]), SourceConfig(kind="replay", path=str(tmp_path / "empty_run"), count=5)])
    with pytest.raises(DataError, match=r"empty_run.*no train\.jsonl"):
        P.prepare(cfg)


def test_write_plots_answer_lengths_and_the_card_has_their_stats(tmp_path, files):
    prepared = P.prepare(data([SourceConfig(path=files["a"], weight=1), SourceConfig(path=files["b"], weight=1)], eval_fraction=0.2))
    P.write(prepared, tmp_path / "out")
    png = tmp_path / "out" / "data_card.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    stats = json.loads((tmp_path / "out" / "data_card.json").read_text())["answer_words"]
    assert set(stats) == {"a", "b"}
    assert all(5 <= s["min"] <= s["median"] <= s["max"] <= 60 and s["records"] == 50 for s in stats.values())
    md = (tmp_path / "out" / "data_card.md").read_text()
    assert re.search(r"^\| answers \(words\) +\|", md, re.M) and "weight: 1.0" in md
    assert re.search(r"^\| mixture +\| 150 +\| 100 +\|", md, re.M)


def test_config_names_conflicting_or_unusable_shares():
    with pytest.raises(ConfigError, match=r"data\.sources\.0: .*one of count, weight or fraction"):
        load_config(None, ["data.sources=[{path: x.jsonl, count: 3, weight: 1}]"])
    with pytest.raises(ConfigError, match=r"data: .*total needs at least one source with a weight"):
        load_config(None, ["data.total=10"])
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.fraction"):
        load_config(None, ["data.sources=[{kind: replay, path: runs/x, fraction: 1.5}]"])
