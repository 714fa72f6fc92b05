"""The data_mix recipe on the real corpora in ../shared/data (skipped when they are absent): every
source and every step is in the data card, and each step's counts add up."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from medtune.core.config import load_config
from medtune.data import prepare as P

REPO = Path(__file__).parents[1]
RECIPE = REPO / "configs" / "recipes" / "data_mix.yaml"
SHARED = Path(os.environ.get("MEDTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")


@pytest.fixture(scope="module")
def card(tmp_path_factory) -> dict:
    """The recipe's data card, with its ../shared/data paths pointed at SHARED."""
    tmp = tmp_path_factory.mktemp("data_mix")
    recipe = tmp / "data_mix.yaml"
    recipe.write_text(RECIPE.read_text().replace("../shared/data", str(SHARED)))
    cfg = load_config(recipe)
    P.write(P.prepare(cfg.data), tmp / "data")
    assert (tmp / "data" / "data_card.png").stat().st_size > 10_000
    card = json.loads((tmp / "data" / "data_card.json").read_text())
    card["markdown"] = (tmp / "data" / "data_card.md").read_text()
    return card


def test_card_lists_every_source_with_its_share(card):
    sources = {s["kind"]: s for s in card["sources"]}
    assert set(sources) == {"medquad", "chatdoctor", "pubmedqa"}
    assert sources["medquad"]["records_loaded"] > 10_000 and sources["medquad"]["skipped"]["total"] > 0  # MedlinePlus: no answers
    assert sources["pubmedqa"]["asked"] == {"count": 500} and sources["pubmedqa"]["records_used"] == 500
    # data.total = 6000: PubMedQA's 500, then 5500 shared 0.6 : 0.4
    assert (sources["medquad"]["records_used"], sources["chatdoctor"]["records_used"]) == (3300, 2200)
    assert card["mixture"] == {"total": 6000, "records": 6000}
    for s in card["sources"]:
        assert s["records_loaded"] >= s["records_available"] >= s["records_used"] > 0
        assert sum(s["licenses"].values()) == s["records_used"]
        assert s["path"] in card["markdown"]
    assert set(card["answer_words"]) == {"medquad", "chatdoctor5k", "ori_pqal"}


def test_every_step_is_counted_and_adds_up(card):
    steps = card["steps"]
    assert [st["name"] for st in steps] == ["quality_filter", "scrub_pii", "dedupe", "mixture", "decontaminate"]
    for st in steps:
        assert st["records_out"] == st["records_in"] - sum(st["dropped"].values()) + sum(st.get("added", {}).values()), st["name"]
        assert re.search(rf"^\| {st['name']} +\| {st['records_in']} +\| ", card["markdown"], re.M), st["name"]
    for before, after in zip(steps[:3], steps[1:4]):
        assert after["records_in"] == before["records_out"]
    assert steps[0]["records_in"] == sum(s["records_loaded"] for s in card["sources"])
    assert steps[2]["records_out"] == sum(s["records_available"] for s in card["sources"])
    assert steps[1]["changed"], "PII scrubbing found something to replace in the real corpora"
    decontaminate = steps[-1]
    assert decontaminate["records_in"] == steps[3]["records_out"] - card["split"]["eval"]
    assert decontaminate["records_out"] == card["split"]["train"]
    assert sum(decontaminate["dropped"].values()) >= 0
    assert len(card["decontaminated_against"]["files"]) == 3


def test_every_source_adds_up_at_every_step(card):
    """in − dropped + added = out for every source at every step, and each step starts where the
    previous one ended (the split sits between the mixture and decontamination)."""
    names = {"medquad", "chatdoctor5k", "ori_pqal"}
    previous = {s["names"][0]: s["records_loaded"] for s in card["sources"]}
    assert set(previous) == names
    for st in card["steps"]:
        assert set(st["sources"]) == names, st["name"]
        for name, c in st["sources"].items():
            assert c["in"] - c["dropped"] + c["added"] == c["out"], (st["name"], name, c)
            assert c["in"] == previous[name], (st["name"], name)
        assert sum(c["dropped"] for c in st["sources"].values()) == sum(st["dropped"].values()), st["name"]
        previous = {name: c["out"] for name, c in st["sources"].items()}
        if st["name"] == "mixture":
            split = card["split"]["by_source"]
            assert {n: split[n]["train"] + split[n]["eval"] for n in names} == previous
            previous = {n: split[n]["train"] for n in names}
    assert sum(previous.values()) == card["split"]["train"]  # decontamination's output is train.jsonl
    steps = {st["name"]: st["sources"] for st in card["steps"]}
    assert steps["dedupe"]["medquad"]["dropped"] > 100  # MedQuAD repeats answers across its sites
    assert steps["mixture"]["ori_pqal"]["out"] == 500
    medquad = steps["dedupe"]["medquad"]
    assert f"{medquad['in']} → {medquad['out']} (−{medquad['dropped']})" in card["markdown"]


def test_card_counts_what_the_adapters_left_out_or_changed(card):
    sources = {s["kind"]: s for s in card["sources"]}
    assert sources["pubmedqa"]["skipped"]["left_out"] == {"in without_ids (test_ground_truth.json)": 500}
    assert sources["chatdoctor"]["changed"]["boilerplate_records"] > 0  # strip_boilerplate: true
    assert all(len(s["input_sha256"]) == 64 for s in card["sources"])
    assert "left out of" in card["markdown"] and "boilerplate_records" in card["markdown"]
