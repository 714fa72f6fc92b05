"""The prepare stage: sources → records → filters → deterministic split → train/eval JSONL
plus a data card that says, per source and per step, what came in, what was dropped and why."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from medtune.config import DataConfig, SourceConfig
from tqdm.auto import tqdm

from medtune.data.clean import StepResult, quality_filter, scrub_pii
from medtune.data.decontaminate import decontaminate, held_out_texts, load_eval_texts
from medtune.data.dedup import dedupe
from medtune.data.errors import SkipLog
from medtune.data.records import Record

BUILTIN_DIR = Path(__file__).parent / "builtin"
BUILTIN_SETS = {"starter": ("starter.jsonl", "Apache-2.0 (medtune authors)")}


@dataclass
class Prepared:
    train: list[Record]
    eval: list[Record]
    card: dict


def load_source(src: SourceConfig, on_error: str, skips: SkipLog) -> list[Record]:
    """Records of one configured source, through its adapter (``builtin`` = a set shipped here)."""
    from medtune.data.sources import load_source as adapter_load

    kind, path, options = src.kind, src.path, {**src.options, **src.fields}
    if kind == "builtin":
        if path not in BUILTIN_SETS:
            raise ValueError(f"data.sources: unknown built-in set '{path}' (have: {', '.join(BUILTIN_SETS)})")
        filename, license = BUILTIN_SETS[path]
        kind, path = "generic", str(BUILTIN_DIR / filename)
        options = {"source": f"builtin:{src.path}", "license": license, **options}
    if src.license:
        options["license"] = src.license
    return adapter_load(kind, path, on_error=on_error, skips=skips, **options)


def stable_fraction(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (seed, key): the same record always lands in the same split."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split(records: list[Record], fraction: float, seed: int, eval_max: int | None = None) -> tuple[list[Record], list[Record]]:
    """Held-out records chosen by a stable hash of ``source/id``: adding records never reshuffles."""
    train, held = [], []
    for r in records:
        (held if stable_fraction(seed, f"{r.source}/{r.id}") < fraction else train).append(r)
    if eval_max is not None and len(held) > eval_max:
        held.sort(key=lambda r: stable_fraction(seed + 1, f"{r.source}/{r.id}"))
        train.extend(held[eval_max:])
        held = held[:eval_max]
    return train, held


def _step(name: str, records_in: int, result: StepResult) -> dict:
    return {"name": name, "records_in": records_in, "records_out": len(result.records), **result.to_dict()}


def prepare(cfg: DataConfig) -> Prepared:
    """Run the data stage in memory; ``write`` puts it on disk. Every step is counted in the card."""
    rng = random.Random(cfg.seed)
    records: list[Record] = []
    sources_card = []
    for src in tqdm(cfg.sources, desc="loading sources", unit="source", disable=len(cfg.sources) < 3):
        skips = SkipLog()
        loaded = load_source(src, cfg.on_error, skips)
        used = rng.sample(loaded, src.count) if src.count is not None and len(loaded) > src.count else loaded
        sources_card.append(
            {
                "kind": src.kind,
                "path": src.path,
                "records_loaded": len(loaded),
                "records_used": len(used),
                "skipped": skips.to_dict(),
                "licenses": dict(Counter(r.license for r in used)),
                "sha256": _records_hash(used),
            }
        )
        records.extend(used)
    steps = []

    def run(name, fn, *args, **kwargs):
        nonlocal records
        result = fn(records, *args, **kwargs)
        steps.append(_step(name, len(records), result))
        records = result.records

    run("quality_filter", quality_filter, min_answer_chars=cfg.min_answer_chars, max_answer_chars=cfg.max_answer_chars, min_question_chars=1)
    if cfg.scrub_pii:
        run("scrub_pii", scrub_pii)
    if cfg.dedupe:
        run("dedupe", dedupe, near=cfg.near_dedupe, threshold=cfg.dedupe_threshold)
    ids = Counter(f"{r.source}/{r.id}" for r in records)
    if dup_ids := [k for k, n in ids.items() if n > 1]:
        raise ValueError(f"record ids are not unique within their source, e.g. {dup_ids[:3]}")
    train, held = split(records, cfg.eval_fraction, cfg.seed, cfg.eval_max)
    eval_texts = held_out_texts(held) + (load_eval_texts(cfg.decontaminate) if cfg.decontaminate else [])
    if eval_texts:
        records = train
        run("decontaminate", decontaminate, eval_texts, n=cfg.decontaminate_ngram)
        train = records
    if not train:
        raise ValueError("no training records left after preparation (check sources and filters)")
    card = {
        "sources": sources_card,
        "steps": steps,
        "split": {"train": len(train), "eval": len(held), "eval_fraction": cfg.eval_fraction, "seed": cfg.seed},
        "decontaminated_against": {"held_out": len(held), "files": cfg.decontaminate},
        "template": cfg.template,
        "system_prompt": cfg.system_prompt,
        "train_sha256": _records_hash(train),
        "eval_sha256": _records_hash(held),
    }
    return Prepared(train, held, card)


def _records_hash(records: list[Record]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def write(prepared: Prepared, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", prepared.train)
    write_jsonl(out / "eval.jsonl", prepared.eval)
    (out / "data_card.json").write_text(json.dumps(prepared.card, indent=2, ensure_ascii=False))
    (out / "data_card.md").write_text(card_markdown(prepared.card))


def write_jsonl(path: Path, records: list[Record]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[Record]:
    with open(path, encoding="utf-8") as f:
        return [Record.from_dict(json.loads(line)) for line in f if line.strip()]


def card_markdown(card: dict) -> str:
    lines = ["# Data card", "", "| source | loaded | used | skipped | licences |", "|---|---|---|---|---|"]
    for s in card["sources"]:
        lic = ", ".join(f"{k} ({v})" for k, v in s["licenses"].items())
        lines.append(f"| {s['kind']}:{s['path']} | {s['records_loaded']} | {s['records_used']} | {s['skipped']['total']} | {lic} |")
    lines += ["", "| step | in | out | dropped | changed |", "|---|---|---|---|---|"]
    for st in card["steps"]:
        lines.append(f"| {st['name']} | {st['records_in']} | {st['records_out']} | {_counts(st['dropped'])} | {_counts(st['changed'])} |")
    sp = card["split"]
    lines += ["", f"Split: {sp['train']} train / {sp['eval']} eval (fraction {sp['eval_fraction']}, seed {sp['seed']}).", ""]
    for s in card["sources"]:
        for reason, examples in s["skipped"]["examples"].items():
            lines.append(f"- skipped in {s['path']} ({reason}): " + "; ".join(examples))
    for st in card["steps"]:
        for reason, ids in st["examples"].items():
            lines.append(f"- {st['name']} / {reason}: e.g. " + ", ".join(ids))
    return "\n".join(lines) + "\n"


def _counts(counts: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items())
