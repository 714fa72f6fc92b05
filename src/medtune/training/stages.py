"""Multi-stage training: one config, several stages, each starting from the previous stage's adapter.

A config with ``stages:`` runs them in order (``medtune run``). Stage ``i`` is the base config with
the stage's overrides merged in (``config.stage_config``) and gets its own, self-describing run
directory ``output_dir/name/<stage>/`` (config, manifest, data, adapter, logs, eval). How a stage
begins from the one before (``start``):

* ``continue``: the same base model, and the previous adapter keeps training (``lora.init_adapter``);
* ``merge``: the previous adapter is merged into the de-quantized base (``<stage>/merged_base/``, a
  plain safetensors model), which becomes this stage's base; a fresh adapter is trained on top
  (re-quantized at load for QLoRA).

A replay source ``{kind: replay, path: <earlier stage>, fraction|count}`` draws from that stage's
training mixture. After every stage the evaluate stage runs, and ``stages.{json,md}`` in the parent
run directory put every stage's metrics side by side; each stage's model is also scored (eval loss)
on every earlier stage's held-out split, so forgetting shows as a loss that climbs back up.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from medtune.core.atomic import write_json, write_text
from medtune.core.config import RunConfig, stage_config
from medtune.core.models import merge_adapter
from medtune.core.rundir import RunDir
from medtune.evaluate.metrics import lower_is_better
from medtune.training.pipeline import Events, run_one

log = logging.getLogger(__name__)
BOOKKEEPING = {"n", "stderr", "chance", "seconds", "bf16_scored", "rechecked_float32"}
"""Numbers a report section carries beside its metrics (sample size, chance level, how it was scored): not stage-table columns."""
OWN_SPLIT = ("results", "degeneration")
"""Report sections measured on the stage's own held-out split: not comparable across stages."""


@dataclass
class Stage:
    name: str
    cfg: RunConfig
    run: RunDir
    start: str
    """'base' (the first stage), 'continue' or 'merge'."""


def run_stages(cfg: RunConfig, events: Events | None = None) -> dict:
    """Prepare, train and evaluate every stage in order (``pipeline.run_one``); returns the stage table
    (also on disk). ``events`` gets ``stage`` (``{"index", "count", "name", "start", "previous"}``)
    before each stage, then that stage's ``run_one`` events."""
    parent = RunDir.create(cfg)
    done: list[Stage] = []
    reports: dict[str, dict] = {}
    for i, spec in enumerate(cfg.stages):
        previous = done[-1] if done else None
        start = spec.start if previous else "base"
        log.info("stage %d/%d: %s%s", i + 1, len(cfg.stages), spec.name, f" (starts from {previous.name}: {start})" if previous else "")
        if events is not None:
            events("stage", {"index": i, "count": len(cfg.stages), "name": spec.name, "start": start,
                             "previous": previous.name if previous else None})
        scfg = start_from(stage_config(cfg, i), spec, previous)
        result = run_one(scfg, events)
        reports[spec.name] = result.report
        result.run.update_manifest(stage={"index": i, "name": spec.name, "start": start, "parent": str(parent.path),
                                          "previous": previous.name if previous else None})
        done.append(Stage(spec.name, scfg, result.run, start))
        reports[spec.name]["held_out_loss"] = held_out_losses(done[-1], done)
        write_table(stage_table(done, reports), parent.path)
    base_losses = held_out_losses(done[0], done, adapter=False)
    table = stage_table(done, reports, base_losses)
    write_table(table, parent.path)
    parent.update_manifest(stages=[{"name": s.name, "run_dir": str(s.run.path)} for s in done])
    return table


def start_from(scfg: RunConfig, spec, previous: Stage | None) -> RunConfig:
    """The stage's config with its starting point filled in (see the module docstring)."""
    if previous is None:
        return scfg
    if spec.start == "continue":
        if spec.model.get("name") not in (None, previous.cfg.model.name):
            raise ValueError(f"stage {spec.name}: 'continue' trains {previous.name}'s adapter further, so it keeps that stage's base model "
                             "(drop model.name or use start: merge)")
        adapter = json.loads((previous.run.adapter / "adapter_config.json").read_text())
        scfg = scfg.model_copy(deep=True)
        scfg.model.name = previous.cfg.model.name
        scfg.lora.init_adapter = str(previous.run.adapter.resolve())
        scfg.lora.r, scfg.lora.alpha = adapter["r"], adapter["lora_alpha"]  # the adapter's own shape applies; say so in config.yaml
        return scfg
    merged = scfg.run_dir / "merged_base"
    merge_adapter(previous.cfg.model, previous.run.adapter, merged)  # previous stage's adapter into its de-quantized base
    scfg = scfg.model_copy(deep=True)
    scfg.model.name = str(merged.resolve())
    scfg.lora.init_adapter = None
    return scfg


def held_out_losses(stage: Stage, stages: list[Stage], adapter: bool = True) -> dict[str, float]:
    """Eval loss of ``stage``'s model (or, ``adapter=False``, its base) on each stage's held-out split:
    the same tokenization and answer-only masking as training (TRL's ``evaluate``)."""
    from contextlib import nullcontext

    from trl import SFTTrainer

    from medtune.data.records import read_jsonl
    from medtune.data.templates import data_examples
    from medtune.inference.loading import load_generator
    from medtune.training.train import sft_config

    cfg = stage.cfg
    generator, _ = load_generator(str(stage.run.path), quantization="none" if cfg.eval.base_precision == "full" else None)
    losses = {}
    with (nullcontext() if adapter else generator.model.disable_adapter()):
        for other in stages:
            records = read_jsonl(other.run.data / "eval.jsonl")
            if not records:
                continue
            # the split as its own stage tokenized it (template, max_seq_length): a later stage may train on
            # shorter rows, and its limit would drop long earlier items (PubMedQA abstracts) altogether
            dataset = data_examples(records, other.cfg.data)
            args = sft_config(other.cfg, stage.run, has_eval=True)
            args.report_to, args.output_dir = [], str(stage.run.eval / "tmp")
            trainer = SFTTrainer(model=generator.model, args=args, train_dataset=dataset, eval_dataset=dataset,
                                 processing_class=generator.tokenizer)
            metrics = trainer.evaluate()
            if "eval_loss" not in metrics:
                raise ValueError(f"stage {other.name}: no held-out example has its answer within "
                                 f"train.max_seq_length={other.cfg.train.max_seq_length}")
            losses[other.name] = metrics["eval_loss"]
    return losses


def report_metrics(report: dict, model: str = "finetuned") -> dict[str, float]:
    """Every number the evaluation report holds for one model, flattened: ``results.<m>`` → ``<m>``,
    ``mcq.<bench>.<model>.<m>`` → ``mcq.<bench>.<m>``, and so on for any section shaped like them."""
    out: dict[str, float] = {}

    def walk(node, prefix: str):
        if not isinstance(node, dict):
            return
        if isinstance(node.get(model), dict):
            for key, value in node[model].items():
                if key not in BOOKKEEPING and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    out[prefix + key] = float(value)
            return
        for key, value in node.items():
            if key != "held_out_loss":
                walk(value, f"{prefix}{key}.")

    walk(report.get("results", {}), "")
    walk({k: v for k, v in report.items() if k != "results"}, "")
    return out


def stage_table(stages: list[Stage], reports: dict[str, dict], base_losses: dict[str, float] | None = None) -> dict:
    """Rows: the base model, then each stage's tuned model. Columns: every metric any report has,
    then ``loss on <stage> held-out`` for every stage. ``forgetting`` lists each shared metric (cross-stage
    held-out losses, benchmark sections such as ``mcq``) that is worse after a later stage than its best
    after an earlier one."""
    rows = []
    first = reports[stages[0].name]
    base = report_metrics(first, "base")
    if base or base_losses:
        rows.append({"stage": "base", "metrics": {**base, **{f"loss on {k} held-out": v for k, v in (base_losses or {}).items()}}})
    for s in stages:
        report = reports[s.name]
        metrics = report_metrics(report)
        metrics.update({f"loss on {k} held-out": v for k, v in report.get("held_out_loss", {}).items()})
        rows.append({"stage": s.name, "run_dir": str(s.run.path), "start": s.start, "metrics": metrics})
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row["metrics"] if c not in columns]
    # a stage's own results and the degeneration of its answers are on its own held-out split, so only shared
    # yardsticks can show forgetting: the cross-stage held-out losses and benchmark sections (e.g. MCQ accuracy)
    own = {m for r in reports.values() for m in report_metrics({k: r[k] for k in OWN_SPLIT if k in r})}
    forgetting = []
    tuned = [r for r in rows if r["stage"] != "base"]
    for col in (c for c in columns if c not in own):
        lower = lower_is_better(col)
        best = None
        for row in tuned:
            value = row["metrics"].get(col)
            if value is None:
                continue
            if best is not None and (value - best[1] if lower else best[1] - value) > 1e-9:
                forgetting.append({"metric": col, "best_stage": best[0], "best": best[1], "stage": row["stage"], "value": value,
                                   "change": value - best[1]})
            if best is None or (value < best[1] if lower else value > best[1]):
                best = (row["stage"], value)
    return {"columns": columns, "rows": rows, "forgetting": forgetting,
            "note": "each stage's own metrics are on its own held-out split; "
                    "'loss on <stage> held-out' compares every model on the same items"}


def write_table(table: dict, out: Path) -> None:
    write_json(out / "stages.json", table, indent=2)
    write_text(out / "stages.md", table_markdown(table))


def table_markdown(table: dict) -> str:
    cols = table["columns"]
    rows = [[row["stage"], *(_fmt(row["metrics"].get(c)) for c in cols)] for row in table["rows"]]
    markdown = tabulate(rows, headers=["stage", *cols], tablefmt="github", disable_numparse=True)
    lines = ["# Stage by stage", "", table["note"] + ".", "", markdown]
    lines += ["", "## Forgetting", ""]
    if not table["forgetting"]:
        lines.append("No metric got worse after a later stage.")
    for f in table["forgetting"]:
        lines.append(f"- **{f['metric']}**: {_fmt(f['best'])} after {f['best_stage']} → {_fmt(f['value'])} after {f['stage']} "
                     f"({f['change']:+.4f})")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4f}"
