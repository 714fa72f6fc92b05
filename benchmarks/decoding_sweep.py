"""Decoding settings on a model (the built-in base, or a run): degeneration and ROUGE-L on MedQuAD questions.

The same questions are answered under each setting through the evaluation's own path (``Responder``
with guardrails off, the model's system prompt and template, ``--max-new-tokens`` new tokens), and
scored with the evaluation's measures: ROUGE-L and BERTScore F1 against the MedQuAD reference, and
the degeneration measures of ``evaluate/degeneration.py`` (templates fitted on the documents of
MedQuAD not asked), and how many answers name what the question asks about (MedQuAD's focus, e.g.
"Ataxia Telangiectasia", written out whole: blocking n-grams of the prompt mangles such names) and how many
contain an invented word (a word of five letters or more found nowhere in MedQuAD's questions and answers,
like "Telangégy" or "Korskakoff": what blocking a name's second mention produces). The questions are a
stable sample (by record id), from all collections or from
``--collection`` only (a source the run never trained on, for a tuned model); ``--seed`` fixes which.

    nice -n 5 python benchmarks/decoding_sweep.py [--model smollm2-135m-instruct | runs/RUN] [--n 40]
        [--medquad ../shared/data/medquad] [--collection 5_NIDDK_QA] [--out sweep.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_WORD = re.compile(r"[a-zà-ÿ]{5,}")
SETTINGS = {
    "greedy, no penalty": {"temperature": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0},
    "greedy, rep 1.1": {"temperature": 0.0, "repetition_penalty": 1.1, "no_repeat_ngram_size": 0},
    "greedy, rep 1.2": {"temperature": 0.0, "repetition_penalty": 1.2, "no_repeat_ngram_size": 0},
    "greedy, no-repeat 4": {"temperature": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 4},
    "greedy, no-repeat 6": {"temperature": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 6},
    "greedy, no-repeat 8": {"temperature": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 8},
    "greedy, no-repeat 4, prompt counted": {"temperature": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 4,
                                            "penalize_prompt": True},
    "greedy, rep 1.1, prompt counted": {"temperature": 0.0, "repetition_penalty": 1.1, "no_repeat_ngram_size": 0,
                                        "penalize_prompt": True},
    "greedy, rep 1.1 + no-repeat 4": {"temperature": 0.0, "repetition_penalty": 1.1, "no_repeat_ngram_size": 4},
    "sampled 0.3, rep 1.1": {"temperature": 0.3, "repetition_penalty": 1.1, "no_repeat_ngram_size": 0},
    "sampled 0.3, no-repeat 4": {"temperature": 0.3, "repetition_penalty": 1.0, "no_repeat_ngram_size": 4},
}


def main() -> None:
    default_data = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "medquad"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="a built-in or local model, or a run directory")
    ap.add_argument("--medquad", type=Path, default=default_data)
    ap.add_argument("--collection", help="draw the questions from this MedQuAD collection only (e.g. 5_NIDDK_QA)")
    ap.add_argument("--n", type=int, default=40, help="questions")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="setting names to run (default: all)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()

    import statistics

    from tabulate import tabulate

    from medtune.data.boilerplate import fit_records
    from medtune.data.errors import SkipLog
    from medtune.data.sources import load_source
    from medtune.data.split import stable_fraction
    from medtune.evaluate.bootstrap import paired_difference
    from medtune.evaluate.degeneration import degeneration
    from medtune.evaluate.metrics import bertscore_items, rouge_items
    from medtune.inference.loading import load_generator
    from medtune.inference.responder import Responder

    records = load_source("medquad", str(args.medquad), on_error="skip", skips=SkipLog())
    pool = records if not args.collection else load_source("medquad", str(args.medquad / args.collection), on_error="skip",
                                                            skips=SkipLog())
    ranked = sorted(pool, key=lambda r: stable_fraction(args.seed, f"{r.source}/{r.id}"))
    questions = ranked[: args.n]
    asked = {r.document for r in questions}
    templates = fit_records([r for r in records if r.document not in asked])
    vocabulary = {w for r in records for w in _WORD.findall(f"{r.question} {r.answer}".lower())}
    references = [r.answer for r in questions]
    generator, run_cfg = load_generator(args.model, "none")  # a built-in name, a model path or a run directory
    rows, figures, first = [], {}, None
    for name, setting in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        cfg = run_cfg.model_copy(deep=True)
        cfg.generation = cfg.generation.model_copy(update=setting)
        start = time.time()
        answered = Responder(generator, cfg, guardrails=False).answer_batch([r.question for r in questions],
                                                                           max_new_tokens=args.max_new_tokens)
        seconds = time.time() - start
        answers = [a.answer for a in answered]
        deg = degeneration(answers, references, templates, [a.finish_reason == "stop" for a in answered])["summary"]
        per_item = [r["rougeL"] for r in rouge_items(answers, references)]
        rouge = statistics.fmean(per_item)
        first = first or per_item  # the first setting run is the reference of the paired differences
        delta = paired_difference(first, per_item)
        ci = f"{delta['difference']:+.4f} [{delta['ci'][0]:+.4f}, {delta['ci'][1]:+.4f}]" if delta["ci"] else f"{delta['difference']:+.4f}"
        named = statistics.fmean(focus_named(r, a) for r, a in zip(questions, answers, strict=True))
        invented = [sorted({w for w in _WORD.findall(a.lower()) if w not in vocabulary}) for a in answers]
        invented_share = statistics.fmean(bool(w) for w in invented)
        bert = statistics.fmean(r["bertscore_f1"] for r in bertscore_items(answers, references))
        figures[name] = {**setting, "rougeL": rouge, "rougeL_vs_first": delta, "bertscore_f1": bert, "focus_named": named,
                         "invented_words": invented_share,
                         "invented": sorted({w for ws in invented for w in ws}), **deg, "seconds": seconds}
        rows.append([name, f"{rouge:.4f}", ci, f"{bert:.4f}", f"{named:.0%}", f"{invented_share:.0%}", f"{deg['degenerate']:.0%}",
                     f"{deg['repeated_line']:.0%}",
                     f"{deg['ngram_loop']:.0%}", f"{deg['template']:.0%}", f"{deg['distinct_2']:.3f}", f"{deg['ends_on_eos']:.0%}",
                     f"{deg['mean_words']:.0f}", f"{deg['length_ratio']:.2f}", f"{seconds:.0f}"])
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
        if args.out:  # after every setting, so a long sweep stopped early keeps what it measured
            args.out.write_text(json.dumps({"model": args.model, "collection": args.collection, "n": len(questions),
                                            "max_new_tokens": args.max_new_tokens, "settings": figures}, indent=2))
    print(f"{len(questions)} MedQuAD questions from {args.collection or 'all collections'} (stable sample, seed {args.seed}), "
          f"model {args.model}, "
          f"{args.max_new_tokens} new tokens, guardrails off; {len(templates.openings)} templates fitted on the other documents.")
    print(tabulate(rows, headers=["setting", "ROUGE-L", "ΔROUGE-L vs the first [95% CI]",
                                  "BERTScore F1", "names focus", "invented word", "degenerate", "repeated line", "loop", "template",
                                  "distinct-2", "ends on EOS", "mean words", "length / ref", "seconds"],
                   tablefmt="github", disable_numparse=True))


def focus_named(record, answer: str) -> bool:
    """Whether the answer writes the question's focus out whole (case and spacing aside)."""
    focus = " ".join(str(record.meta.get("focus") or record.meta.get("focus_area") or "").lower().split())
    return bool(focus) and focus in " ".join(answer.lower().split())


if __name__ == "__main__":
    main()
