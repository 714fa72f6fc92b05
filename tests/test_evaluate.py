"""The evaluate stage's report: metrics with intervals, MCQ and safety sections, report.md/html."""

import base64
import json
import shutil

import pytest
from helpers import REPO

from medtune.evaluate.metrics import CONDITIONAL, METRICS

ALWAYS = [m for m in METRICS if m not in CONDITIONAL]

pytestmark = pytest.mark.slow


def test_report_has_every_metric_with_intervals(trained_run):
    cfg, run, _, report = trained_run
    saved = json.loads((run.eval / "report.json").read_text())
    for name in ("base", "finetuned"):
        res = saved["results"][name]
        assert set(ALWAYS) <= set(res) and "reasoning" not in res  # no model here writes a <think> section
        assert 0 <= res["bleu"] <= 100 and 0 <= res["token_accuracy"] <= 1
        assert -1 <= res["bertscore_f1"] <= 1
        assert res["perplexity"] == pytest.approx(2.718281828 ** res["eval_loss"], rel=1e-6)
        for m in ALWAYS:
            lo, hi = saved["ci"][name][m]
            assert lo - 1e-9 <= res[m] <= hi + 1e-9 or m == "bleu", m  # a mean lies in its bootstrap interval
    for m in ALWAYS:
        d = saved["differences"][m]
        assert d["difference"] == pytest.approx(saved["results"]["finetuned"][m] - saved["results"]["base"][m], abs=1e-9)
        assert d["significant"] == (not d["ci"][0] <= 0 <= d["ci"][1])
    assert saved["n_loss_items"] == saved["n_eval_records"]
    md = (run.eval / "report.md").read_text()
    assert "bertscore_f1" in md and "bleu" in md and "95%" in md


def test_report_html_is_self_contained(trained_run):
    _, run, _, _ = trained_run
    page = (run.eval / "report.html").read_text()
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) >= 2  # training curves, metric bars
    for chunk in images:
        assert base64.b64decode(chunk.split('"', 1)[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page and "<script" not in page
    first = json.loads((run.eval / "answers.jsonl").read_text().splitlines()[0])
    import html

    assert html.escape(first["question"]) in page and html.escape(first["reference"]) in page
    assert "Training curves" in page and "Example answers" in page


def test_mcq_and_safety_sections(trained_run, tmp_path):
    """A copy of the trained run evaluated again with a tiny MCQ file and one safety prompt per category."""
    from medtune.core.config import dump_config
    from medtune.core.rundir import RunDir
    from medtune.evaluate.run import evaluate

    cfg, run, _, _ = trained_run
    copy = RunDir(tmp_path / "copy")
    for part in ("data", "adapter", "logs"):
        shutil.copytree(run.path / part, copy.path / part)
    cfg = cfg.model_copy(deep=True)
    cfg.output_dir, cfg.name = str(tmp_path), "copy"
    cfg.eval.mcq = [{"name": "tiny", "path": str(REPO / "tests/fixtures/mcq_small.jsonl"), "limit": 3}]
    cfg.eval.safety, cfg.eval.safety_limit, cfg.eval.bootstrap_samples = True, 1, 200
    cfg.eval.max_samples = 1
    dump_config(cfg, copy.config)
    report = evaluate(cfg, copy)

    from medtune.evaluate.mcq import load_benchmark

    items = load_benchmark(cfg.eval.mcq[0], cfg.eval.bootstrap_seed)
    saved = json.loads((copy.eval / "report.json").read_text())
    for name in ("base", "finetuned"):
        entry = saved["mcq"]["tiny"][name]
        assert 0 <= entry["accuracy"] <= 1 and entry["n"] == 3
        assert entry["chance"] == pytest.approx(sum(1 / len(it.options) for it in items) / 3)
        assert entry["mode"] == "loglik" and "stderr" in entry
        safety = saved["safety"][name]
        assert safety["n"] == len(safety["categories"]) and set(safety["categories"]) >= {"emergency", "benign"}
        assert all(0 <= c["pass_rate"] <= 1 for c in safety["categories"].values())
    assert "significant" in saved["mcq"]["tiny"]["difference"]
    assert report["mcq"]["tiny"]["finetuned"]["accuracy"] == saved["mcq"]["tiny"]["finetuned"]["accuracy"]
    page = (copy.eval / "report.html").read_text()
    assert "Multiple-choice benchmarks" in page and "Safety suite" in page and page.count("data:image/png;base64,") >= 4
    md = (copy.eval / "report.md").read_text()
    assert "## Multiple-choice benchmarks" in md and "## Safety suite" in md


def test_external_set_gets_its_own_section_and_degeneration(trained_run, tmp_path):
    """A set from outside the run (`medtune eval RUN --data generic:FILE`): its training questions are left
    out, the rest scored base vs tuned with intervals, degeneration measures and its own report section."""
    from medtune.core.config import EvalSet, dump_config
    from medtune.core.rundir import RunDir
    from medtune.data.records import read_jsonl
    from medtune.evaluate.run import evaluate

    cfg, run, _, _ = trained_run
    copy = RunDir(tmp_path / "copy")
    for part in ("data", "adapter", "logs"):
        shutil.copytree(run.path / part, copy.path / part)
    cfg = cfg.model_copy(deep=True)
    cfg.output_dir, cfg.name, cfg.eval.bootstrap_samples, cfg.eval.max_samples = str(tmp_path), "copy", 200, 1
    dump_config(cfg, copy.config)
    trained = read_jsonl(copy.data / "train.jsonl")[0]
    outside = tmp_path / "outside.jsonl"
    rows = [{"question": trained.question, "answer": trained.answer},
            {"question": "What is a kidney stone?", "answer": "A hard lump of minerals that forms in the kidney and can cause sharp pain."},
            {"question": "How is anaemia found?", "answer": "A blood test (full blood count) shows a low haemoglobin level."}]
    outside.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = evaluate(cfg, copy, [EvalSet.parse(f"outside=generic:{outside}")])

    entry = report["sets"]["outside"]
    assert entry["left_out"] == {"loaded": 3, "in_training": 1, "skipped": 0} and entry["n_generated"] == 2
    for name in ("base", "finetuned"):
        assert set(ALWAYS) <= set(entry["results"][name]) and entry["ci"][name]["rougeL"] is not None
        deg = entry["degeneration"][name]
        assert 0 <= deg["degenerate"] <= 1 and 0 <= deg["ends_on_eos"] <= 1 and deg["distinct_1"] > 0
    assert entry["differences"]["rougeL"]["ci"] is not None and "worse" in entry["degeneration"]
    assert "degenerate" in report["degeneration"]["finetuned"] and "ends_on_eos" not in report["degeneration"]["reference"]
    answers = [json.loads(line) for line in (copy.eval / "answers_outside.jsonl").read_text().splitlines()]
    assert [a["question"] for a in answers] == [r["question"] for r in rows[1:]] and all("base" in a for a in answers)
    assert "## Set: outside" in (copy.eval / "report.md").read_text() and "Set: outside" in (copy.eval / "report.html").read_text()


def test_grounded_eval_answers_from_the_index_it_builds(trained_run, tmp_path):
    """`eval.grounded`: base and tuned answer the held-out questions from retrieved passages (the index is built
    from retrieval.sources when it is missing); the scored text has no citation markers or Sources list, and
    without an index the setting is an error, not a silent ungrounded eval."""
    from medtune.core.config import IndexSourceConfig, dump_config
    from medtune.core.rundir import RunDir
    from medtune.evaluate.run import evaluate
    from medtune.retrieval.cite import CITATION

    cfg, run, _, _ = trained_run
    copy = RunDir(tmp_path / "copy")
    for part in ("data", "adapter", "logs"):
        shutil.copytree(run.path / part, copy.path / part)
    cfg = cfg.model_copy(deep=True)
    cfg.output_dir, cfg.name, cfg.eval.bootstrap_samples, cfg.eval.grounded = str(tmp_path), "copy", 50, True
    dump_config(cfg, copy.config)
    with pytest.raises(ValueError, match="eval.grounded"):
        evaluate(cfg, copy)
    cfg.retrieval.index = str(tmp_path / "idx")
    cfg.retrieval.threshold = -1.0  # every question finds passages
    fixture = REPO / "tests/fixtures/qa_small.jsonl"
    cfg.retrieval.sources = [IndexSourceConfig(path=str(fixture), kind="rows", text="answer", title="question")]
    report = evaluate(cfg, copy)

    assert (tmp_path / "idx" / "manifest.json").exists() and report["grounded"]["not_found_rate"] == 0
    plain = [json.loads(line) for line in (run.eval / "answers.jsonl").read_text().splitlines()]
    grounded = [json.loads(line) for line in (copy.eval / "answers.jsonl").read_text().splitlines()]
    assert [a["question"] for a in grounded] == [a["question"] for a in plain]
    texts = [a[m] for a in grounded for m in ("base", "finetuned")]
    assert all("Sources:" not in t and not CITATION.search(t) for t in texts)
    assert texts != [a[m] for a in plain for m in ("base", "finetuned")]  # the passages changed the answers
