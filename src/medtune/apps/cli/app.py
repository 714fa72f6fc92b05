"""The Typer app, its shared options and the one-line error handling every command uses."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Fine-tune small LLMs into safe medical Q&A assistants.",
)
console = Console()

ConfigArg = typer.Argument(..., help="YAML config file.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config key, e.g. --set train.learning_rate=1e-4 (repeatable).")


@app.callback()
def _logging(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the library's progress log (warnings are always shown)."),
) -> None:
    """Fine-tune small LLMs into safe medical Q&A assistants."""
    # the library logs (logging.getLogger(__name__)); the CLI decides what a person sees, and how
    from rich.logging import RichHandler

    logger = logging.getLogger("medtune")
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)  # commands render their own progress
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=Console(stderr=True), show_path=False, show_time=False, markup=False))


def _config(path: Path | None, overrides: list[str] | None):
    from medtune.core.config import ConfigError, load_config

    try:
        return load_config(path, overrides)
    except ConfigError as e:
        console.print(f"[red]config error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _explicit_config(path: Path | None, overrides: list[str] | None):
    """The settings given on the command line (``--config``/``--set``), or None when none were: a run's
    own config then applies as saved (``inference.loading.resolve_config``)."""
    return _config(path, overrides) if (path or overrides) else None


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def command(fn, name: str | None = None):
    """Register a command whose expected failures (bad data, bad model reference, a full disk or read-only
    output) print one line."""
    import functools

    from medtune.core.atomic import is_disk_error
    from medtune.core.models import ModelError
    from medtune.data.errors import DataError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DataError, ModelError, FileNotFoundError, ModuleNotFoundError) as e:
            _fail(str(e))
        except OSError as e:
            if not is_disk_error(e):
                raise
            _fail(f"{e.filename}: {e.strerror}")

    return app.command(name or fn.__name__.rstrip("_"))(wrapper)
