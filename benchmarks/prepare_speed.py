"""Speed of the data-preparation chain (quality filter -> PII scrub -> dedupe -> template) on 100,000 dialogues.

The records are resampled from GenMedGPT-5k (../shared/data/genmedgpt/chatdoctor5k.json) so the
chain sees real text, perturbed so every step has real work:

* 70% new pairs: one record's question with another's answer, a few words dropped;
* 10% exact duplicates of an earlier record up to case, whitespace and punctuation;
* 15% near duplicates: an earlier record with 1-3 words changed;
*  5% bad or personal: an empty answer, or a greeting/sign-off with a name, email or phone number.

Usage: python benchmarks/prepare_speed.py [--n 100000] [--data PATH] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

from medtune.core.config import DEFAULT_SYSTEM_PROMPT
from medtune.data.clean import quality_filter, scrub_pii
from medtune.data.dedup import dedupe
from medtune.data.records import Record
from medtune.data.sources import chatdoctor
from medtune.data.templates import to_example

DEFAULT_DATA = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def build(pool: list[Record], n: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    out: list[Record] = []
    for i in range(n):
        roll = rng.random()
        if out and roll < 0.10:
            src = rng.choice(out)
            q, a = src.question.upper() if rng.random() < 0.5 else src.question + " ", src.answer.replace(".", " .")
        elif out and roll < 0.25:
            src = rng.choice(out)
            words = src.answer.split()
            for _ in range(rng.randint(1, 3) if words else 0):
                words[rng.randrange(len(words))] = rng.choice(["also", "often", "usually", "maybe", "then"])
            q, a = src.question, " ".join(words)
        else:
            q, a = rng.choice(pool).question, rng.choice(pool).answer
            words = a.split()
            for _ in range(3):
                if len(words) > 10:
                    del words[rng.randrange(len(words))]
            a = " ".join(words)
            if roll > 0.95:
                a = rng.choice(
                    [
                        "",
                        f"Hi John, {a} Regards, Dr. Mehta",
                        f"{a} Mail me at pat{i}@example.com or call 555-123-{i % 10000:04d}.",
                        f"Dear Ms Smith, {a} Visit www.example{i}.com",
                    ]
                )
        out.append(Record(id=f"bench-{i}", source=rng.choice(["hcm", "icliniq"]), question=q, answer=a))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t = time.perf_counter()
    pool = chatdoctor.load(str(args.data / "genmedgpt" / "chatdoctor5k.json"))
    records = build(pool, args.n, args.seed)
    print(f"built {len(records):,} records from {len(pool):,} GenMedGPT dialogues in {time.perf_counter() - t:.1f} s")

    steps = [
        ("quality_filter", lambda rs: quality_filter(rs, min_answer_chars=20, min_question_chars=10, max_tokens=2048, language="en")),
        ("scrub_pii", scrub_pii),
        ("dedupe", dedupe),
    ]
    timings: list[tuple[str, float]] = []
    for name, step in steps:
        t = time.perf_counter()
        result = step(records)
        timings.append((name, time.perf_counter() - t))
        print(
            f"{name:15s} {timings[-1][1]:6.2f} s  {len(records) / timings[-1][1]:10,.0f} records/s  "
            f"in {len(records):,} out {len(result.records):,}  dropped {dict(result.dropped)}  changed {dict(result.changed)}"
        )
        records = result.records
    # templating: the prompt-completion examples train.py hands to TRL (alpaca renders the text here;
    # chat leaves the model's template to the tokenizer inside TRL, so it is the cheaper of the two)
    for template in ("chat", "alpaca"):
        t = time.perf_counter()
        examples = [to_example(r, template, DEFAULT_SYSTEM_PROMPT) for r in records]
        timings.append((f"template:{template}", time.perf_counter() - t))
        name, seconds = timings[-1]
        print(f"{name:15s} {seconds:6.2f} s  {len(examples) / seconds:10,.0f} records/s  {len(examples):,} examples")
    chain = [(name, seconds) for name, seconds in timings if name != "template:alpaca"]  # one template per run: the default
    total = sum(seconds for _, seconds in chain)
    print(f"{'total (chat)':15s} {total:6.2f} s  {args.n / total:10,.0f} records/s (of the {args.n:,} built)")
    print("share of time: " + ", ".join(f"{name} {seconds / total:.0%}" for name, seconds in chain))


if __name__ == "__main__":
    main()
