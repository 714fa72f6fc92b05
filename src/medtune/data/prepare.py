"""The prepare stage: sources → records → filters → mixture → deterministic split → train/eval
JSONL, plus a data card (json, md, png) that says, per source and per step, what came in, what
was dropped and why, and how long the answers are."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from tabulate import tabulate
from tqdm.auto import tqdm

from medtune.core.atomic import atomic_path, write_json, write_text
from medtune.core.config import DataConfig, SourceConfig
from medtune.data.clean import StepResult, quality_filter, scrub_pii
from medtune.data.decontaminate import decontaminate, held_out_texts, load_eval_texts
from medtune.data.dedup import dedupe
from medtune.data.errors import DataError, SkipLog
from medtune.data.mixture import mix
from medtune.data.records import Record, read_jsonl, write_jsonl
from medtune.data.split import split, stable_fraction  # noqa: F401  (stable_fraction: the split's hash, used by tests)

BUILTIN_DIR = Path(__file__).parent / "builtin"
BUILTIN_SETS = {  # name: (file, licence, adapter); safety_pairs is written by `medtune safety-pairs`
    "starter": ("starter.jsonl", "Apache-2.0 (medtune authors)", "generic"),
    "safety_pairs": ("safety_pairs.jsonl", "Apache-2.0 (medtune authors; rejected answers by SmolLM2-135M-Instruct)", "preference"),
}


@dataclass
class Prepared:
    train: list[Record]
    eval: list[Record]
    card: dict


def load_source(src: SourceConfig, on_error: str, skips: SkipLog) -> list[Record]:
    """Records of one configured source, through its adapter (``builtin`` = a set shipped here,
    ``replay`` = an earlier stage's training records)."""
    from medtune.data.sources import load_source as adapter_load

    kind, path, options = src.kind, src.path, {**src.options, **src.fields}
    if kind == "replay":
        if options:
            raise ValueError(f"data.sources: replay of {path} takes no options or fields")
        records = replay(Path(path))
        return [replace(r, license=src.license) for r in records] if src.license else records
    if kind == "builtin":
        if path not in BUILTIN_SETS:
            raise ValueError(f"data.sources: unknown built-in set '{path}' (have: {', '.join(BUILTIN_SETS)})")
        filename, license, kind = BUILTIN_SETS[path]
        path = str(BUILTIN_DIR / filename)
        options = {"source": f"builtin:{src.path}", "license": license, **options}
    if src.license:
        options["license"] = src.license
    return adapter_load(kind, path, on_error=on_error, skips=skips, **options)


def replay(path: Path) -> list[Record]:
    """An earlier stage's training records, with their source and licence tags, marked
    ``meta["replay"] = True``. ``path`` is its run directory, the run's ``data/`` or a ``train.jsonl``."""
    candidates = [path] if path.suffix == ".jsonl" else [path / "train.jsonl", path / "data" / "train.jsonl"]
    file = next((c for c in candidates if c.is_file()), None)
    if file is None:
        raise DataError(str(path), "no train.jsonl here; replay reads an earlier run directory, its data/ directory or a train.jsonl file")
    return [replace(r, meta={**r.meta, "replay": True}) for r in read_jsonl(file)]


def _step(name: str, before: list[Record], result: StepResult) -> dict:
    counts = {"name": name, "records_in": len(before), "records_out": len(result.records)}
    return {**counts, **result.to_dict(), "sources": per_source(before, result)}


def per_source(before: list[Record], result: StepResult) -> dict[str, dict[str, int]]:
    """``Record.source`` → ``{in, dropped, added, out}`` for one step (in - dropped + added = out).

    ``dropped`` comes from the step's own ``by_source`` counts (a dedupe drop "b (dup of a)" is
    b's), so the identity is a check on the step, not true by construction; ``added`` counts the
    copies a mixture with ``replace`` puts in (ids ``<id>#k``, not among the step's input)."""
    counts: dict[str, dict[str, int]] = {}
    for r in before:
        counts.setdefault(r.source, {"in": 0, "dropped": 0, "added": 0, "out": 0})["in"] += 1
    for by_source in result.by_source.values():
        for key, n in by_source.items():
            counts.setdefault(key.split(" (dup of ")[0], {"in": 0, "dropped": 0, "added": 0, "out": 0})["dropped"] += n
    seen = {(r.source, r.id) for r in before}
    for r in result.records:
        c = counts.setdefault(r.source, {"in": 0, "dropped": 0, "added": 0, "out": 0})
        c["out"] += 1
        c["added"] += (r.source, r.id) not in seen
    return counts


def prepare(cfg: DataConfig, tokenizer=None, rejected: bool = True) -> Prepared:
    """Run the data stage in memory; ``write`` puts it on disk. Every step is counted in the card.
    ``rejected``: the training method uses a preference pair's rejected answer (DPO); without it (SFT) pairs that
    share a prompt and chosen answer are duplicates (``dedup.dedupe``).

    ``tokenizer`` (the base model's) counts tokens for ``max_tokens``; without one they are
    estimated as characters / 4, and the card says which."""
    records: list[Record] = []
    sources_card = []
    origin: dict[str, int] = {}  # "source/id" → index of the configured source it came from
    loading = tqdm(cfg.sources, desc="loading sources", unit="source", disable=len(cfg.sources) < 2)
    for i, src in enumerate(loading):
        loading.set_postfix_str(f"{src.kind}:{Path(src.path).name}")
        skips = SkipLog()
        loaded = select(load_source(src, cfg.on_error, skips), src.where, f"data.sources[{i}].where", skips)
        for r in loaded:
            origin.setdefault(f"{r.source}/{r.id}", i)
        sources_card.append(
            {
                "kind": src.kind,
                "path": src.path,
                "names": sorted({r.source for r in loaded}),
                "records_loaded": len(loaded),
                "skipped": skips.to_dict(),
                "changed": _load_changes(loaded),
                "asked": _asked(src),
                "input_sha256": input_hash(src),
            }
        )
        records.extend(loaded)
    steps = []
    cleaning = tqdm(desc="cleaning", unit="step", disable=len(records) < 10_000)

    def run(name, fn, *args, **kwargs):
        nonlocal records
        cleaning.set_postfix_str(name)
        result = fn(records, *args, **kwargs)
        steps.append(_step(name, records, result))
        records = result.records
        cleaning.update()

    run(
        "quality_filter",
        quality_filter,
        min_answer_chars=cfg.min_answer_chars,
        max_answer_chars=cfg.max_answer_chars,
        min_question_chars=cfg.min_question_chars,
        max_tokens=cfg.max_tokens,
        tokenizer=tokenizer,
        language=cfg.language,
    )
    if cfg.scrub_pii:
        run("scrub_pii", scrub_pii)
    if cfg.dedupe:
        run("dedupe", dedupe, near=cfg.near_dedupe, threshold=cfg.dedupe_threshold, rejected=rejected)
    if cfg.boilerplate_filter:
        from medtune.data.boilerplate import boilerplate_filter

        run("boilerplate", boilerplate_filter, cfg.boilerplate_min_documents, cfg.boilerplate_max_share, cfg.boilerplate_cap, cfg.seed)
    ids = Counter(f"{r.source}/{r.id}" for r in records)
    if dup_ids := [k for k, n in ids.items() if n > 1]:
        raise ValueError(f"record ids are not unique within their source, e.g. {dup_ids[:3]}")

    # The mixture: each configured source's surviving records, sampled as asked (see data/mixture.py).
    pools: list[list[Record]] = [[] for _ in cfg.sources]
    for r in records:
        pools[origin[f"{r.source}/{r.id}"]].append(r)
    picked = pools
    if cfg.total is not None or any(s["asked"] for s in sources_card):
        mixture = mix(pools, cfg.sources, [s["records_loaded"] for s in sources_card], cfg.total, cfg.seed)
        steps.append({**_step("mixture", records, mixture.step), "added": {"repeated": mixture.repeated} if mixture.repeated else {}})
        picked, records = mixture.picked, mixture.step.records
    mixed = len(records)
    for s, pool, used in zip(sources_card, pools, picked):
        s.update(
            records_available=len(pool),
            records_used=len(used),
            share_used=round(len(used) / max(1, len(records)), 4),
            licenses=dict(Counter(r.license for r in used)),
            sha256=_records_hash(used),
        )

    parts = split(records, cfg.eval_fraction, cfg.seed, cfg.eval_max, cfg.split_by, cfg.holdout_source)
    train, held = parts.train, parts.eval
    by_source: dict[str, dict[str, int]] = {}  # the split per source, before decontamination
    for side, part in (("train", train), ("eval", held)):
        for r in part:
            by_source.setdefault(r.source, {"train": 0, "eval": 0})[side] += 1
    cleaning.set_postfix_str("decontaminate")
    eval_texts = held_out_texts(held) + (load_eval_texts(cfg.decontaminate) if cfg.decontaminate else [])
    if eval_texts:
        records = train
        run("decontaminate", decontaminate, eval_texts, n=cfg.decontaminate_ngram)
        train = records
    cleaning.close()
    if not train:
        raise ValueError("no training records left after preparation (check sources and filters)")
    card = {
        "sources": sources_card,
        "steps": steps,
        "mixture": {"total": cfg.total, "records": mixed},
        "split": {"train": len(train), "eval": len(held), "eval_fraction": cfg.eval_fraction, "seed": cfg.seed, "by_source": by_source,
                  "by": cfg.split_by, "holdout_source": cfg.holdout_source, "groups": parts.groups, "dropped": parts.dropped},
        "answer_words": {group: _stats(lengths) for group, lengths in answer_words(train + held).items()},
        "decontaminated_against": {"held_out": len(held), "files": cfg.decontaminate},
        "template": cfg.template,
        "token_counts": None
        if cfg.max_tokens is None
        else (getattr(tokenizer, "name_or_path", "tokenizer") if tokenizer else "estimated (characters / 4)"),
        "system_prompt": cfg.system_prompt,
        "train_sha256": _records_hash(train),
        "eval_sha256": _records_hash(held),
    }
    return Prepared(train, held, card)


def _load_changes(records: list[Record]) -> dict:
    """What an adapter changed while loading (ChatDoctor's ``strip_boilerplate``: records and kinds)."""
    from medtune.data.sources.chatdoctor import boilerplate_counts

    return {f"boilerplate_{kind}": n for kind, n in boilerplate_counts(records).items()}


def input_hash(src: SourceConfig) -> str | None:
    """SHA-256 of a local source's bytes (a folder: of its files' relative paths and bytes, in
    order), so a card says exactly which input it was made from; ``None`` for Hub ids / built-ins."""
    path = BUILTIN_DIR / BUILTIN_SETS[src.path][0] if src.kind == "builtin" and src.path in BUILTIN_SETS else Path(src.path)
    if src.kind == "replay" or not path.exists():
        return None
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        h.update(file.read_bytes())
    return h.hexdigest()


def select(records: list[Record], where: dict[str, list[str]], name: str, skips: SkipLog) -> list[Record]:
    """The records whose fields hold one of the values asked; the others are counted as left out on purpose
    (``skips.left_out``, as an adapter's filter option is). A field is a ``Record`` attribute or a key of its
    ``meta``. A field no record has, or a ``where`` that keeps nothing, is an error naming ``name`` (a typo must
    not empty a source unseen)."""
    if not where:
        return records
    attributes = set(Record.__dataclass_fields__) - {"meta"}

    def value(r: Record, field: str):
        return getattr(r, field) if field in attributes else r.meta.get(field)

    for field in where:
        if records and all(value(r, field) is None for r in records):
            raise ValueError(f"{name}: no record has the field '{field}'")
    wanted = {field: {str(v) for v in values} for field, values in where.items()}
    kept = [r for r in records if all(str(value(r, f)) in values for f, values in wanted.items())]
    if records and not kept:
        raise ValueError(f"{name}: no record matches {where}")
    if len(kept) < len(records):
        skips.left_out[f"not {_where_text(where)}"] += len(records) - len(kept)
    return kept


def _asked(src: SourceConfig) -> dict:
    """What the config asks of a source's share of the mixture ({} = every record)."""
    asked = {name: getattr(src, name) for name in ("count", "weight", "fraction") if getattr(src, name) is not None}
    if src.where:
        asked["where"] = _where_text(src.where)
    return {**asked, "replace": True} if src.replace else asked


def _where_text(where: dict[str, list[str]]) -> str:
    return " and ".join(f"{field} in {'/'.join(map(str, values))}" for field, values in where.items())


def answer_words(records: list[Record]) -> dict[str, list[int]]:
    """Answer lengths in words per source (replayed records apart, as ``<source> (replay)``)."""
    lengths: dict[str, list[int]] = {}
    for r in records:
        group = f"{r.source} (replay)" if r.meta.get("replay") else r.source
        lengths.setdefault(group, []).append(len(r.answer.split()))
    return lengths


def _stats(lengths: list[int]) -> dict:
    return {"records": len(lengths), "min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)}


def _records_hash(records: list[Record]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def write(prepared: Prepared, out: Path) -> None:
    """train.jsonl, eval.jsonl and the data card: data_card.json, data_card.md, data_card.png."""
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", prepared.train)
    write_jsonl(out / "eval.jsonl", prepared.eval)
    write_json(out / "data_card.json", prepared.card, indent=2, ensure_ascii=False)
    write_text(out / "data_card.md", card_markdown(prepared.card))
    plot_answer_lengths(answer_words(prepared.train + prepared.eval), out / "data_card.png")


def plot_answer_lengths(lengths: dict[str, list[int]], path: Path) -> None:
    """One histogram of answer length (words, log scale) per source, stacked on a shared axis."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    groups = sorted(lengths)
    shortest = max(1, min((min(v) for v in lengths.values()), default=1))
    longest = max((max(v) for v in lengths.values()), default=1)
    bins = np.geomspace(shortest, max(longest, shortest + 1) + 1, 41)
    fig = Figure(figsize=(8, 1.6 * max(1, len(groups)) + 1.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(groups)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, group in zip(axes, groups):
        values = np.maximum(lengths[group], 1)
        median = float(np.median(values))
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.8)
        ax.axvline(median, color="tab:red", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylabel("records")
        ax.set_title(f"{group}: {len(values)} answers, median {median:g} words (red), max {max(values)}", fontsize=9, loc="left")
    axes[-1].set_xlabel("answer length (words, log scale)")
    fig.suptitle("Answer length per source (train + eval)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def card_markdown(card: dict) -> str:
    sources = [
        [
            f"{s['kind']}:{s['path']}",
            s["records_loaded"],
            _counts(s["asked"]) or "all",
            s["records_available"],
            s["records_used"],
            f"{s['share_used']:.1%}",
            _skipped(s["skipped"]),
            ", ".join(f"{k} ({v})" for k, v in s["licenses"].items()),
        ]
        for s in card["sources"]
    ]
    header = ["source", "loaded", "asked", "after cleaning", "used", "share of mixture", "skipped", "licences"]
    lines = ["# Data card", "", _table(header, sources)]
    mixture = card["mixture"]
    lines += ["", f"Mixture: {mixture['records']} records" + (f" (data.total = {mixture['total']})." if mixture["total"] else "."), ""]
    sp = card["split"]
    train_in = next((st["records_in"] for st in card["steps"] if st["name"] == "decontaminate"), sp["train"])
    split_row = ["split", card["mixture"]["records"], f"{train_in} train", "", f"{sp['eval']} held out for eval"]
    steps = []
    for st in card["steps"]:
        if st["name"] == "decontaminate":
            steps.append(split_row)
        changed = ", ".join(filter(None, [_counts(st["changed"]), _counts({f"+{k}": v for k, v in st.get("added", {}).items()})]))
        steps.append([st["name"], st["records_in"], st["records_out"], _counts(st["dropped"]), changed])
    if not any(st["name"] == "decontaminate" for st in card["steps"]):
        steps.append(split_row)
    lines.append(_table(["step", "in", "out", "dropped", "changed"], steps))
    how = f"fraction {sp['eval_fraction']}, by {sp.get('by', 'record')}"
    how = f"source {sp['holdout_source']} held out" if sp.get("holdout_source") else how
    groups = f"; groups {sp['groups']['train']} train / {sp['groups']['eval']} eval" if sp.get("groups") else ""
    cut = f"; {sp['dropped']} held-out records beyond eval_max dropped" if sp.get("dropped") else ""
    lines += ["", f"Split: {sp['train']} train / {sp['eval']} eval ({how}, seed {sp['seed']}{groups}{cut}).", ""]
    lines += _per_source_markdown(card)
    answers = [[group, st["records"], st["min"], f"{st['median']:g}", st["max"]] for group, st in card["answer_words"].items()]
    lines.append(_table(["answers (words)", "records", "min", "median", "max"], answers))
    lines += ["", "Answer length histograms: data_card.png.", ""]
    for s in card["sources"]:
        for reason, examples in s["skipped"]["examples"].items():
            lines.append(f"- skipped in {s['path']} ({reason}, {s['skipped']['by_reason'][reason]}): e.g. " + "; ".join(examples))
        for reason, n in s["skipped"].get("left_out", {}).items():
            lines.append(f"- left out of {s['path']} on purpose ({reason}): {n}")
        if s.get("changed"):
            lines.append(f"- changed while loading {s['path']}: {_counts(s['changed'])}")
    for st in card["steps"]:
        for reason, ids in st["examples"].items():
            lines.append(f"- {st['name']} / {reason}: e.g. " + ", ".join(ids))
    lines += ["", "Content hashes (sha256):", ""]
    for s in card["sources"]:
        lines.append(f"- {s['path']}: input {s.get('input_sha256') or 'n/a (Hub or replay)'}, records used {s['sha256']}")
    lines += [f"- train.jsonl records: {card['train_sha256']}", f"- eval.jsonl records: {card['eval_sha256']}"]
    return "\n".join(lines) + "\n"


def _skipped(skipped: dict) -> str:
    left_out = sum(skipped.get("left_out", {}).values())
    return f"{skipped['total']}" + (f" (+{left_out} left out)" if left_out else "")


def _per_source_markdown(card: dict) -> list[str]:
    """Records in → out (dropped, +added) per source (``Record.source``) at every step."""
    names = sorted({name for st in card["steps"] for name in st.get("sources", {})} | set(card["split"].get("by_source", {})))
    if not names:
        return []

    def cell(c: dict | None) -> str:
        if not c:
            return ""
        return f"{c['in']} → {c['out']}" + (f" (−{c['dropped']})" if c["dropped"] else "") + (f" (+{c['added']})" if c["added"] else "")

    rows = []
    for st in card["steps"]:
        if st["name"] == "decontaminate":
            split = card["split"].get("by_source", {})
            sides = (split.get(n, {}) for n in names)
            rows.append(["split (train / eval)", *(f"{s.get('train', 0)} / {s.get('eval', 0)}" for s in sides)])
        rows.append([st["name"], *(cell(st.get("sources", {}).get(n)) for n in names)])
    return ["Per source and step: records in → out (−dropped, +added).", "", _table(["step", *names], rows), ""]


def _counts(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items())


def _table(header: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table; cells are written as given (no number re-formatting)."""
    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)
