"""Generation metrics on tiny inputs with known values."""

import pytest

from medtune.evaluate.metrics import bertscore_items, bleu_items, corpus_bleu, rouge, rouge_items


def test_identical_strings_score_perfectly():
    text = ["Drink plenty of fluids and rest until the fever settles."]
    assert bleu_items(text, text) == [pytest.approx(100.0)]
    assert corpus_bleu(text, text) == pytest.approx(100.0)
    assert rouge(text, text) == {"rouge1": pytest.approx(1.0), "rouge2": pytest.approx(1.0), "rougeL": pytest.approx(1.0)}


def test_disjoint_strings_score_zero():
    assert bleu_items(["alpha beta gamma delta"], ["one two three four"]) == [pytest.approx(0.0)]
    assert rouge_items(["alpha beta"], ["one two"])[0]["rouge1"] == 0.0


def test_known_partial_overlap():
    # unigrams: 2 of 3 predicted words in a 4-word reference -> P=2/3, R=2/4, F=4/7
    assert rouge_items(["the cat sat"], ["the cat was here"])[0]["rouge1"] == pytest.approx(4 / 7)
    # a partial match scores strictly between the extremes (smoothed sentence BLEU)
    assert 0 < bleu_items(["the cat sat"], ["the cat was here"])[0] < 100


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        bleu_items(["a", "b"], ["a"])


@pytest.mark.slow
def test_bertscore_with_the_offline_encoder():
    rows = bertscore_items(["Rest and drink fluids.", "Take the car to the garage."], ["Rest and drink fluids.", "Rest and drink fluids."])
    assert set(rows[0]) == {"bertscore_precision", "bertscore_recall", "bertscore_f1"}
    assert rows[0]["bertscore_f1"] == pytest.approx(1.0, abs=1e-4)
    assert rows[1]["bertscore_f1"] < rows[0]["bertscore_f1"] - 0.1
    mixed = bertscore_items(["  ", "Take the car to the garage."], ["Rest.", "Rest and drink fluids."])
    assert mixed[0]["bertscore_f1"] == 0.0, "an empty answer matches nothing"
    assert mixed[1]["bertscore_f1"] == pytest.approx(rows[1]["bertscore_f1"], abs=1e-5), "an empty neighbour changes no other score"
    with pytest.raises(ValueError, match="bertscore_layers"):
        bertscore_items(["a"], ["a"], model="someone/unknown-encoder")
