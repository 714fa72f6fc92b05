"""What the boilerplate filter (data/boilerplate.py) finds in MedQuAD, per collection.

Fits the templates on every answered MedQuAD pair, runs the filter with the config defaults, and
prints per collection: pairs, link lists dropped, templated answers dropped (beyond the cap per
template), kept; then the templates used by the most documents.

    nice -n 5 python benchmarks/boilerplate_counts.py [--medquad ../shared/data/medquad] [--top 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    default_data = Path(os.environ.get("MEDTUNE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "medquad"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--medquad", type=Path, default=default_data)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()

    from tabulate import tabulate

    from medtune.core.config import DataConfig
    from medtune.data.boilerplate import boilerplate_filter, fit_records, group_of, is_link_list, opening, sentences
    from medtune.data.errors import SkipLog
    from medtune.data.sources import load_source

    cfg = DataConfig()
    records = load_source("medquad", str(args.medquad), on_error="skip", skips=SkipLog())
    start = time.time()
    result = boilerplate_filter(records, cfg.boilerplate_min_documents, cfg.boilerplate_max_share, cfg.boilerplate_cap, cfg.seed)
    seconds = time.time() - start
    kept = {id(r) for r in result.records}
    templates = fit_records(records, cfg.boilerplate_min_documents, cfg.boilerplate_max_share)

    counts: dict[str, Counter] = {}
    for r in records:
        c = counts.setdefault(r.meta.get("collection", "?"), Counter())
        c["pairs"] += 1
        if id(r) in kept:
            c["kept"] += 1
        else:
            c["link_list" if is_link_list(r.answer, templates) else "templated"] += 1
    rows = [[name, c["pairs"], c["link_list"], c["templated"], c["kept"]] for name, c in sorted(counts.items())]
    total = Counter()
    for c in counts.values():
        total.update(c)
    rows.append(["all", total["pairs"], total["link_list"], total["templated"], total["kept"]])
    print(f"MedQuAD {len(records)} answered pairs, {len({group_of(r) for r in records})} documents; {len(templates.openings)} templates "
          f"(openings in >= {cfg.boilerplate_min_documents} documents); filter {seconds:.1f}s; cap {cfg.boilerplate_cap} per template.")
    print(tabulate(rows, headers=["collection", "pairs", "link lists dropped", "templated dropped", "kept"], tablefmt="github"))
    users: Counter = Counter()
    for r in records:
        for key in {opening(s) for s in sentences(r.answer)} & templates.openings:
            users[key] += 1
    print()
    print(tabulate([[k, n] for k, n in users.most_common(args.top)], headers=["template opening", "answers using it"], tablefmt="github"))


if __name__ == "__main__":
    main()
