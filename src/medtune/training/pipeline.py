"""One pipeline: prepare → train → evaluate into one run directory (``run_one``).

``medtune prepare``, ``train`` and ``run``, every stage of a multi-stage config (``stages.py``) and
every point of a sweep (``sweep.py``) go through ``run_one``, so they prepare, train and record a run
the same way (e.g. ``data.max_tokens`` is always counted with the base model's own tokenizer).

Progress: the library logs (``logging``) and, when given ``events``, calls ``events(name, data)``
on the main process at each step, so an app can render it. The events, in order:

==============  =========================================================================
``prepare``     ``{"run": RunDir}``: the data stage begins (not sent when data is reused)
``prepared``    ``{"run", "card", "split": {"train", "eval"}, "copied_from": Path | None}``
``train``       ``{"run"}``: training begins
``trained``     ``{"run", "result": TrainResult}``
``evaluate``    ``{"run"}``: evaluation begins
``evaluated``   ``{"run", "report": dict}``
``done``        ``{"result": RunResult}``
==============  =========================================================================

Under ``accelerate launch`` the main process creates the run directory and prepares the data
first; the other processes wait for it, then all of them train together.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtune.core.atomic import atomic_dir
from medtune.core.config import RunConfig
from medtune.core.rundir import RunDir
from medtune.training.train import TrainResult

log = logging.getLogger(__name__)

Events = Callable[[str, dict[str, Any]], None]
"""``events(name, data)``: see the module docstring for the names and their data."""


@dataclass
class RunResult:
    run: RunDir
    card: dict | None
    """The data card (``data/data_card.json``); None when the data on disk has none."""
    split: dict[str, int]
    """Records per split: ``{"train": n, "eval": n}``."""
    train: TrainResult | None
    """None when training was skipped."""
    report: dict | None
    """The evaluation report; None when evaluation was skipped."""
    seconds: float
    """Wall time of this call."""


def prepare_data(cfg: RunConfig, run: RunDir) -> dict:
    """The data stage into ``run.data``; returns the data card. ``data.max_tokens`` counts tokens with the
    base model's own tokenizer (without a limit no tokenizer is loaded). An SFT stage trains on a preference
    pair's prompt and chosen answer only, so its dedupe compares those (two pairs of one prompt and chosen answer
    with different rejected answers would train the chosen answer twice)."""
    from medtune.core.models import base_tokenizer
    from medtune.data import prepare as data_prepare

    tokenizer = base_tokenizer(cfg.model) if cfg.data.max_tokens else None
    prepared = data_prepare.prepare(cfg.data, tokenizer, rejected=cfg.train.method != "sft")
    data_prepare.write(prepared, run.data)
    return prepared.card


def run_one(
    cfg: RunConfig,
    events: Events | None = None,
    *,
    data_from: str | Path | None = None,
    keep_data: bool = False,
    train: bool = True,
    evaluate: bool = True,
    resume: bool = False,
) -> RunResult:
    """Create ``cfg.run_dir``, prepare the data, train and evaluate; record the wall time in the manifest.

    ``data_from``: a prepared data directory to copy instead of preparing (sweep points with the same
    data section). ``keep_data``: use the data already in the run directory when there is some
    (``medtune train``). ``train``/``evaluate``: skip a step. ``resume``: continue training from the
    last complete checkpoint.
    """
    from medtune.training.train import is_main_process, main_process_first
    from medtune.training.train import train as run_train

    start = time.time()
    main = is_main_process()

    def emit(name: str, **data) -> None:
        if events is not None and main:
            events(name, data)

    run, fresh = RunDir(cfg.run_dir), False
    with main_process_first():  # the main process writes the run directory; the others then read it
        if main:
            run = RunDir.create(cfg)
            if data_from is not None:
                with atomic_dir(run.data) as tmp:
                    shutil.copytree(data_from, tmp, dirs_exist_ok=True)
                fresh = True
            elif not (keep_data and (run.data / "train.jsonl").exists()):
                emit("prepare", run=run)
                prepare_data(cfg, run)
                fresh = True
    card = _card(run)
    split = _split(run, card)
    if fresh:
        how = f"copied from {data_from}:" if data_from else "prepared"
        log.info("%s %d train / %d eval records → %s", how, split["train"], split["eval"], run.data)
        emit("prepared", run=run, card=card, split=split, copied_from=Path(data_from) if data_from is not None else None)

    result = report = None
    if train:
        emit("train", run=run)
        result = run_train(cfg, run, resume=resume)
        if main:
            log.info("trained %d steps in %.0fs (train loss %s) → %s", result.steps, result.seconds, result.train_loss, run.adapter)
        emit("trained", run=run, result=result)
    if evaluate:
        from medtune.evaluate.run import evaluate as run_evaluate

        emit("evaluate", run=run)
        report = run_evaluate(cfg, run)
        emit("evaluated", run=run, report=report)
    seconds = time.time() - start
    if main and (train or evaluate):
        run.update_manifest(wall_seconds=round(seconds, 1))
    out = RunResult(run, card, split, result, report, seconds)
    emit("done", result=out)
    return out


def _card(run: RunDir) -> dict | None:
    path = run.data / "data_card.json"
    return json.loads(path.read_text()) if path.exists() else None


def _split(run: RunDir, card: dict | None) -> dict[str, int]:
    if card is not None:
        return {"train": card["split"]["train"], "eval": card["split"]["eval"]}
    return {name: _lines(run.data / f"{name}.jsonl") for name in ("train", "eval")}


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0
