"""Degenerate answers: loops, repeated lines, learned boilerplate, runaway length.

A fine-tune can raise ROUGE by learning a corpus's templates, or fall into a loop that the
reference-overlap metrics barely see. These measures are taken for every model in every report,
and for the reference answers too (what the data itself looks like):

* ``repeated_line``: share of answers in which a line of 3+ words appears twice or more;
* ``ngram_loop``: share of answers in which one word 4-gram appears ``LOOP_REPEATS`` times or more
  (a phrase going round: "the cells of the cells of the cells of…");
* ``template``: share of answers matching a template learned from the run's training answers
  (``data.boilerplate.Templates``, the same detector as the ``data.boilerplate_filter`` step);
* ``header_end``: share of answers that stop on a list header with nothing after it ("The main causes
  are:"), a broken answer that a model learns from training answers cut off after their header;
* ``number_run``: share of answers that reel off ``NUMBER_RUN`` or more numbers in a row with only
  punctuation between them ("988 (the 989 888 987 4000 ..."): a loop the n-gram test misses, since
  every number differs (a safety run's emergency answers did it after the number they must give);
* ``degenerate``: share with any of the five (the figure the summary compares);
* ``distinct_1`` / ``distinct_2``: distinct word uni/bigrams over all uni/bigrams of all answers
  (Li et al., 2016; low = the model says the same things to everyone);
* ``ends_on_eos``: share of answers that ended on an end-of-turn token rather than at
  ``max_new_tokens`` (from the generator, not guessed from the text);
* ``mean_words`` and ``length_ratio`` (mean words over the references' mean words).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from medtune.data.boilerplate import Templates

LOOP_N = 4
LOOP_REPEATS = 3
NUMBER_RUN = 8
_NUMBER_RUN = re.compile(r"(?:\b\d+\b[^\w\n]{0,4}){" + str(NUMBER_RUN) + ",}")
_WORD = re.compile(r"\w+(?:'\w+)?")
SHARES = ("degenerate", "repeated_line", "ngram_loop", "template", "header_end", "number_run")
"""Per-answer flags (their shares are reported and compared base vs tuned; lower is better)."""


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def repeated_line(text: str) -> bool:
    """A line of three or more words appears at least twice."""
    lines = Counter(" ".join(words(line)) for line in text.splitlines() if len(words(line)) >= 3)
    return any(n >= 2 for n in lines.values())


def ngram_loop(text: str, n: int = LOOP_N, repeats: int = LOOP_REPEATS) -> bool:
    """One word n-gram appears ``repeats`` times or more."""
    w = words(text)
    grams = Counter(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
    return bool(grams) and max(grams.values()) >= repeats


def header_end(text: str) -> bool:
    """The answer stops on a list header, its list missing ("Here are the main causes:")."""
    return text.rstrip().endswith(":")


def number_run(text: str) -> bool:
    """``NUMBER_RUN`` or more numbers in a row, nothing but punctuation or spaces between them."""
    return bool(_NUMBER_RUN.search(text))


def distinct(texts: Sequence[str], n: int) -> float | None:
    """Distinct word n-grams / all word n-grams over ``texts`` (None without any n-gram)."""
    grams = [tuple(w[i : i + n]) for t in texts for w in [words(t)] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def flags(text: str, templates: Templates | None) -> dict[str, bool]:
    """The per-answer flags of ``SHARES``."""
    out = {"repeated_line": repeated_line(text), "ngram_loop": ngram_loop(text),
           "template": bool(templates is not None and templates.matches(text)), "header_end": header_end(text),
           "number_run": number_run(text)}
    out["degenerate"] = any(out.values())
    return out


def degeneration(answers: Sequence[str], references: Sequence[str], templates: Templates | None = None,
                 stopped: Sequence[bool] | None = None) -> dict:
    """``{"summary": {metric: value}, "items": {flag: [0/1 per answer]}}`` for one model's answers."""
    per = [flags(a, templates) for a in answers]
    items = {k: [float(f[k]) for f in per] for k in SHARES}
    n = max(len(answers), 1)
    mean_words = sum(len(words(a)) for a in answers) / n
    ref_words = sum(len(words(r)) for r in references) / max(len(references), 1)
    summary = {k: sum(v) / n for k, v in items.items()}
    summary.update(distinct_1=distinct(answers, 1), distinct_2=distinct(answers, 2), mean_words=mean_words,
                   length_ratio=mean_words / ref_words if ref_words else None)
    if stopped is not None:
        summary["ends_on_eos"] = sum(map(bool, stopped)) / n
    return {"summary": summary, "items": items}


def compare(by_model: dict[str, dict], references: Sequence[str], templates: Templates | None, samples: int = 1000,
            seed: int = 0) -> dict:
    """Every model's degeneration summary, the references' (what the data looks like), the paired
    tuned − base difference of each share, and ``worse``: the shares in which the tuned model
    degenerates more than its base (any increase; ``significant`` says whether its interval excludes 0).

    ``by_model``: ``{name: {"answers": [...], "stopped": [...] | None}}``."""
    from medtune.evaluate.bootstrap import paired_difference

    scored = {name: degeneration(m["answers"], references, templates, m.get("stopped")) for name, m in by_model.items()}
    out = {name: d["summary"] for name, d in scored.items()}
    out["reference"] = degeneration(references, references, templates)["summary"]
    out["templates"] = len(templates.openings) if templates is not None else 0
    if {"base", "finetuned"} <= set(scored):
        out["differences"] = {k: paired_difference(scored["base"]["items"][k], scored["finetuned"]["items"][k], samples=samples, seed=seed)
                              for k in SHARES}
        out["worse"] = [k for k in SHARES if out["finetuned"][k] > out["base"][k]]
    return out
