"""The one CLI (Typer). Every command takes the same config (YAML + ``--set key=value``).

Commands live in modules by kind: ``pipeline`` (prepare, train, eval, run, sweep), ``answer`` (ask,
safety, chat, ui, serve, mcq), ``export``, ``index``; importing them registers them on ``app``. This package
and the UI and API apps are the only code that renders (rich tables, colours); the library logs.
"""

from __future__ import annotations

import os
import sys

from medtune.apps.cli import answer, export, index, pipeline  # noqa: F401  (registers the commands)
from medtune.apps.cli.app import app


def main() -> None:
    # Idle OpenMP threads sleep instead of spinning (read when torch loads, so before any command imports it).
    # On a shared CPU a spinning thread waits for a partner that is not scheduled: measured here, ~10x the CPU
    # time per training token (docs/training-speed.md). OMP_WAIT_POLICY set by the user wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
