"""MCQ benchmarks: loading every shape, the prompt, letter parsing, and the scorer on the real model."""

import math
import os
import subprocess
import sys
import time

import pytest
from helpers import REPO, shared

from medtune.core.config import MCQBenchmark
from medtune.data.errors import DataError
from medtune.evaluate import mcq

FIXTURE = REPO / "tests/fixtures/mcq_small.jsonl"


def test_fixture_items_and_prompt():
    items = mcq.load_benchmark(MCQBenchmark(name="tiny", path=str(FIXTURE)))
    assert [it.answer for it in items] == ["B", "C", "A", "D"]
    assert mcq.prompt(items[0]) == "Question: Which organ pumps blood around the body?\nA. Liver\nB. Heart\nC. Kidney\nD. Lung\nAnswer:"
    assert len(items[3].options) == 5


def test_limit_is_a_seeded_sample():
    bench = MCQBenchmark(name="tiny", path=str(FIXTURE), limit=2)
    a, b = mcq.load_benchmark(bench, seed=0), mcq.load_benchmark(bench, seed=0)
    assert [i.id for i in a] == [i.id for i in b] and len(a) == 2


def test_real_benchmark_files():
    medqa = mcq.load_benchmark(MCQBenchmark(name="medqa", path=str(shared("mcq/medqa.test.jsonl"))))
    assert len(medqa) == 1273 and all(len(it.options) == 4 for it in medqa)
    medmcqa = mcq.load_benchmark(MCQBenchmark(name="medmcqa", path=str(shared("mcq/medmcqa.test.jsonl")), limit=50))
    assert len(medmcqa) == 50
    expert = mcq.load_benchmark(MCQBenchmark(name="pubmedqa", path=str(shared("pubmedqa/ori_pqal.json")),
                                             only_ids=str(shared("pubmedqa/test_ground_truth.json"))))
    lettered = mcq.load_benchmark(MCQBenchmark(name="pubmedqa", path=str(shared("mcq/pubmedqa.test.jsonl"))))
    assert len(expert) == len(lettered) == 500
    assert expert[0].options == {"A": "yes", "B": "no", "C": "maybe"} and expert[0].context
    text = mcq.prompt(expert[0])
    assert text.startswith("Abstract: ") and "\nQuestion: " in text and text.endswith("C. maybe\nAnswer:")
    # the expert set restricted to the test ids is the lettered test file, item for item
    by_id = {it.id.split("-", 1)[1]: it for it in lettered}
    same = [
        it for it in expert if by_id[it.id.split("-", 1)[1]].answer == it.answer and by_id[it.id.split("-", 1)[1]].question == it.question
    ]
    assert len(same) == 500


def test_hub_benchmark_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(DataError, match="Hugging Face Hub"):
        mcq.load_benchmark(MCQBenchmark(name="medqa"))
    assert time.time() - start < 30


@pytest.mark.parametrize(
    "text, letter",
    [
        ("B", "B"),
        ("(C) Vitamin D", "C"),
        ("D. Pancreas is where insulin is made.", "D"),
        ("The correct answer is A.", "A"),
        ("I think the answer: c", "C"),
        ("Heart", "B"),
        ("I am not sure.", None),
        ("", None),
    ],
)
def test_parse_letter(text, letter):
    options = {"A": "Liver", "B": "Heart", "C": "Kidney", "D": "Lung"}
    assert mcq.parse_letter(text, options) == letter


def test_summary_accuracy_stderr_chance():
    items = mcq.load_benchmark(MCQBenchmark(name="tiny", path=str(FIXTURE)))
    rows = [{"choice": c, "answer": it.answer} for c, it in zip("BCXX", items)]
    out = mcq.summary(rows, items, samples=100)
    assert out["accuracy"] == 0.5 and out["n"] == 4
    assert out["stderr"] == pytest.approx(math.sqrt(0.25 / 3))  # sample std / sqrt(n), as lm-eval
    assert out["chance"] == pytest.approx((3 / 4 + 1 / 5) / 4)


@pytest.fixture(scope="module")
def base_lm(base_model_dir):
    from medtune.core.models import load_model, load_tokenizer

    return load_model(str(base_model_dir), dtype="float32").eval(), load_tokenizer(str(base_model_dir))


def _independent_choice(model, tokenizer, item):
    """Per letter, one un-batched forward pass over prompt + " X"; the log-prob of the last token."""
    import torch

    context = tokenizer(mcq.prompt(item))["input_ids"]
    scores = {}
    for letter in item.options:
        ids = tokenizer(mcq.prompt(item) + " " + letter)["input_ids"]
        assert ids[: len(context)] == context and len(ids) == len(context) + 1
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -2].float()
        scores[letter] = float(torch.log_softmax(logits, -1)[ids[-1]])
    return max(scores, key=scores.get), scores


@pytest.mark.slow
def test_loglik_scorer_matches_independent_forward_passes(base_lm):
    model, tokenizer = base_lm
    items = mcq.load_benchmark(MCQBenchmark(name="tiny", path=str(FIXTURE)))
    batched = mcq.score_loglik(model, tokenizer, items, batch_size=4, precision="model")
    single = mcq.score_loglik(model, tokenizer, items, batch_size=1, precision="model")
    for item, b, s in zip(items, batched, single):
        choice, scores = _independent_choice(model, tokenizer, item)
        assert b["choice"] == s["choice"] == choice, item.id
        for letter in item.options:  # batching (left padding, explicit positions) changes nothing
            assert b["logprobs"][letter] == pytest.approx(scores[letter], abs=1e-3)
            assert s["logprobs"][letter] == pytest.approx(scores[letter], abs=1e-3)


@pytest.mark.slow
def test_bf16_checked_scoring_keeps_the_float32_choices(base_lm):
    model, tokenizer = base_lm
    items = mcq.load_benchmark(MCQBenchmark(name="tiny", path=str(FIXTURE)))
    exact = mcq.score_loglik(model, tokenizer, items, batch_size=4, precision="model")
    fast = mcq.score_loglik(model, tokenizer, items, batch_size=4)
    assert [r["choice"] for r in fast] == [r["choice"] for r in exact]
    assert all(r["precision"] == "float32" for r in exact)
    if not mcq.bf16_autocast_helps(model):  # a CPU without native bf16: the default is plain float32
        assert fast == exact
        return
    # a margin no item reaches: every item is re-scored and carries exactly the float32 figures
    rechecked = mcq.score_loglik(model, tokenizer, items, batch_size=4, recheck_margin=float("inf"))
    assert [{k: v for k, v in r.items() if k != "rechecked"} for r in rechecked] == exact and all(r["rechecked"] for r in rechecked)
    # no re-check: bf16 figures, close to float32 but not equal
    plain = mcq.score_loglik(model, tokenizer, items, batch_size=4, recheck_margin=0.0)
    assert all(r["precision"] == "bf16" and not r.get("rechecked") for r in plain)
    shifts = [abs(p["logprobs"][k] - e["logprobs"][k]) for p, e in zip(plain, exact) for k in e["logprobs"]]
    assert 0 < max(shifts) < 1.0
    for r, e, p in zip(fast, exact, plain):  # the default: float32 figures exactly where the bf16 margin was close
        assert r.get("rechecked", False) == (mcq.top_margin(p["logprobs"]) < mcq.RECHECK_MARGIN)
        assert (r["logprobs"] == e["logprobs"]) == r.get("rechecked", False)
    summary = mcq.summary(fast, items, samples=10)
    assert summary["bf16_scored"] + summary["rechecked_float32"] == len(items)


@pytest.mark.slow
def test_generative_scoring_reports_unparseable_rate(base_model_dir):
    from medtune.inference.loading import load_generator

    generator, cfg = load_generator(str(base_model_dir), quantization="none")
    items = mcq.load_benchmark(MCQBenchmark(name="tiny", path=str(FIXTURE), limit=2))
    result, rows = mcq.evaluate_benchmark(generator, items, "both", cfg.generation, batch_size=2, samples=50)
    assert result["mode"] == "loglik" and 0 <= result["generate"]["unparseable_rate"] <= 1
    for row in rows["generate"]:
        assert row["choice"] == mcq.parse_letter(row["text"], next(it.options for it in items if it.id == row["id"]))


@pytest.mark.slow
@pytest.mark.extended
def test_agrees_with_lm_evaluation_harness():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/mcq_vs_lmeval.py"),
            "--file",
            str(FIXTURE),
            "--kind",
            "mcq",
            "--limit",
            "4",
            "--batch-size",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "medtune (default, bf16_checked) 4/4 items identical; medtune float32 4/4" in out.stdout, out.stdout
