"""The group-aware held-out split (data/split.py) and the boilerplate filter (data/boilerplate.py)."""

import pytest
from helpers import REPO, shared, tiny_overrides

from medtune.core.config import DataConfig, EvalSet, SourceConfig, load_config
from medtune.data import prepare as P
from medtune.data.boilerplate import boilerplate_filter, fit_records, is_link_list
from medtune.data.records import Record, write_jsonl
from medtune.data.split import split
from medtune.evaluate.run import load_set


def _docs(source="a", docs=60, per_doc=3):
    return [Record(id=f"{source}{d}-{q}", source=source, question=f"q {source} {d} {q}?", answer=f"answer {source} {d} {q}",
                   document=f"d{d}") for d in range(docs) for q in range(per_doc)]


def test_split_by_document_keeps_sister_questions_together():
    records = _docs()
    for by, apart in (("document", False), ("record", True)):
        parts = split(records, 0.3, seed=1, by=by)
        straddling = {r.document for r in parts.train} & {r.document for r in parts.eval}
        assert parts.eval and bool(straddling) is apart, by  # a record-level split puts sisters on both sides
    capped = split(records, 0.3, seed=1, eval_max=10, by="document")
    assert len(capped.eval) == 10 and not {r.document for r in capped.train} & {r.document for r in capped.eval}
    assert capped.dropped == 2  # the straddling document's last two questions are on neither side


def test_holdout_source_is_one_line_and_never_trained_on(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", _docs("a", 20))
    write_jsonl(tmp_path / "b.jsonl", _docs("b", 10))
    sources = [SourceConfig(path=str(tmp_path / "a.jsonl"), options={"source": "a"}),
               SourceConfig(path=str(tmp_path / "b.jsonl"), options={"source": "b"})]
    prepared = P.prepare(DataConfig(sources=sources, holdout_source="b", eval_max=12, near_dedupe=False))
    assert {r.source for r in prepared.eval} == {"b"} and {r.source for r in prepared.train} == {"a"}
    assert len(prepared.eval) == 12 and prepared.card["split"]["dropped"] == 18  # the rest of b is not trained on
    assert len(prepared.train) == 60


def _templated_corpus():
    records = []
    for d in range(30):
        name = f"Syndrome {chr(65 + d % 26)}{d}"
        records.append(Record(id=f"t{d}", source="s", question=f"What are the treatments for {name}?", document=f"d{d}", answer=(
            f"These resources address the diagnosis or management of {name}:\n- Genetic Testing Registry: {name}\n"
            f"- MedlinePlus Encyclopedia: {name}\n- Diagnostic Tests\n- Drug Therapy\n- Palliative Care")))
        records.append(Record(id=f"i{d}", source="s", question=f"Is {name} inherited?", document=f"d{d}", answer=(
            "This condition is inherited in an autosomal recessive pattern, which means both copies of the gene in each cell "
            "have mutations. The parents of an individual with an autosomal recessive condition each carry one copy.")))
        records.append(Record(id=f"u{d}", source="s", question=f"What is {name}?", document=f"d{d}", answer=(
            f"{name} is a rare condition number {d} that affects {d + 2} organs; people notice symptoms {d} years after birth.")))
    return records


def test_boilerplate_filter_drops_link_lists_and_caps_templates():
    records = _templated_corpus()
    templates = fit_records(records, min_documents=20)
    assert "these resources address the diagnosis or" in templates.openings
    assert not any(o.startswith("syndrome") for o in templates.openings)  # the unique answers are not a template
    result = boilerplate_filter(records, min_documents=20, cap=3, seed=0)
    kept = {r.id[0] for r in result.records}
    assert result.dropped == {"link_list": 30, "templated": 27}
    assert sum(r.id.startswith("i") for r in result.records) == 3 and kept == {"i", "u"}
    assert result.by_source["templated"]["s"] == 27
    # a list of symptoms inside an explanation is not a link list
    assert not is_link_list("Symptoms include\n- fever\n- cough\n- tiredness\nMost people get better within a week without "
                            "treatment, but see a doctor if you have trouble breathing, chest pain or a fever that lasts more "
                            "than three days, or if you are pregnant or older than 65.", templates)


def test_boilerplate_on_real_medquad_finds_the_resource_lists():
    ghr = shared("medquad", "3_GHR_QA")
    from medtune.data.sources import load_source

    records = load_source("medquad", str(ghr), limit=1500)
    result = boilerplate_filter(records, min_documents=20)
    dropped = [r for r in records if r not in result.records]
    resources = [r for r in records if r.answer.startswith("These resources address")]
    assert len(resources) > 100 and sum(r not in dropped for r in resources) <= 3  # at most the cap of one template
    assert len(result.records) > len(records) / 2  # the explanations stay


def test_eval_set_skip_takes_a_sample_apart_from_the_first(tmp_path):
    """``eval.sets[*].skip``: the questions after the first ``skip`` of the stable order, so a final test never
    reuses the sample that settings were chosen on; too large a skip is an error naming the set."""
    cfg = load_config(None, tiny_overrides(tmp_path))
    fixture = str(REPO / "tests" / "fixtures" / "qa_small.jsonl")
    everything, _ = load_set(EvalSet(path=fixture, limit=None, skip=1), cfg, [])
    choose, _ = load_set(EvalSet(path=fixture, limit=5), cfg, [])
    test, left_out = load_set(EvalSet(path=fixture, limit=5, skip=5), cfg, [])
    assert len(everything) == 13 and len(choose) == 5 and len(test) == 5
    assert not {r.id for r in choose} & {r.id for r in test}, "the test sample is apart from the first"
    order = [r.id for r in load_set(EvalSet(path=fixture, limit=13), cfg, [])[0]]  # the stable order's first 13 of 14
    assert [r.id for r in choose] == order[:5] and [r.id for r in test] == order[5:10] == [r.id for r in everything][4:9]
    assert left_out["skipped_first"] == 5 and left_out["loaded"] == 14
    tail, _ = load_set(EvalSet(path=fixture, limit=5, skip=12), cfg, [])
    assert len(tail) == 2 and tail[0].id == order[12] and tail[1].id not in order
    with pytest.raises(ValueError, match=r"eval set qa_small.jsonl .*skip 14 leaves no questions"):
        load_set(EvalSet(path=fixture, limit=5, skip=14), cfg, [])
