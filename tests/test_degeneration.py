"""Degeneration measures (evaluate/degeneration.py) and the red warning when the tuned model degenerates more."""

from medtune.data.boilerplate import Templates
from medtune.evaluate.degeneration import compare, distinct, header_end, ngram_loop, number_run, repeated_line

LOOP = "Take the tablets with water. " + "the dose of the drug is " * 4
LINES = "Genetic Testing Registry: Aarskog syndrome\nGenetic Testing Registry: Aarskog syndrome\nSee a doctor."
PLAIN = "Anaemia is a low level of haemoglobin. A blood test finds it; iron tablets often help."


def test_loops_repeated_lines_and_distinct_n():
    assert ngram_loop(LOOP) and not ngram_loop(PLAIN) and not ngram_loop(LINES)
    assert repeated_line(LINES) and not repeated_line(PLAIN) and not repeated_line(LOOP)
    assert header_end("Gout is a kind of arthritis. The main causes are:\n") and not header_end(PLAIN)
    assert not header_end("Causes: genes and diet.")
    spew = "Call 911 now. Please call 988 (the 989 888 987 4000 Suicide Line) or 112 (the 113 222 333 433 534 635 736 889 990)"
    assert number_run(spew) and not ngram_loop(spew)
    assert not number_run("Blood pressure of 120/80, 2 to 3 times a week, 10 mg in 5 ml; 1. Diet.\n2. Genes.\n3. Age.")
    assert distinct(["a b a b"], 1) == 0.5 and distinct(["a b a b"], 2) == 2 / 3 and distinct([""], 1) is None


def test_tuned_model_that_degenerates_more_is_flagged_in_red():
    from rich.console import Console

    from medtune.apps.cli.render import summary_table

    templates = Templates({"these resources address the diagnosis or"}, max_share=0.5)
    template = "These resources address the diagnosis or management of gout:\n- Diagnostic Tests"
    refs = [PLAIN] * 4
    deg = compare({"base": {"answers": [PLAIN] * 4, "stopped": [True] * 4},
                   "finetuned": {"answers": [LOOP, LINES, template, PLAIN + " The causes are:"],
                                "stopped": [False, True, True, True]}}, refs, templates, samples=200)
    assert deg["finetuned"]["degenerate"] == 1.0 and deg["finetuned"]["header_end"] == 0.25 and deg["base"]["degenerate"] == 0
    assert deg["finetuned"]["template"] == 0.25 and deg["finetuned"]["ends_on_eos"] == 0.75
    assert set(deg["worse"]) == {"degenerate", "repeated_line", "ngram_loop", "template", "header_end"}
    assert deg["base"]["length_ratio"] == 1.0
    metrics = {"rougeL": 0.2}
    report = {"results": {"base": metrics, "finetuned": metrics}, "differences": {}, "degeneration": deg}
    console = Console(record=True, width=200, color_system="truecolor")
    console.print(summary_table(report))
    assert "degenerates more than its base" in console.export_text(clear=False)
    assert "\x1b[1;31m" in console.export_text(styles=True)  # bold red
    calm = compare({"base": {"answers": [LOOP], "stopped": None}, "finetuned": {"answers": [PLAIN], "stopped": None}}, [PLAIN], None, 0)
    assert calm["worse"] == [] and "ends_on_eos" not in calm["finetuned"]
