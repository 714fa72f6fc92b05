"""Reading a config: YAML file(s), ``--set key=value`` overrides, validation with one-line errors.

A recipe may inherit: ``base: other.yaml`` (relative to the file) loads that file first and merges
this one over it (mappings key by key, lists replace), so a CPU variant is its GPU recipe plus a
short diff. Dotted overrides and the merge are a few lines here rather than omegaconf: the schema
is pydantic, and omegaconf's own typing and interpolation would be a second config system.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medtune.core.atomic import write_text
from medtune.core.config.base import ConfigError
from medtune.core.config.compose import check, merge, set_dotted
from medtune.core.config.run import RunConfig

MAX_BASE_DEPTH = 8
"""Longest chain of ``base:`` inheritance (a longer one is almost surely a cycle)."""


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults), apply ``key.sub=value`` overrides, validate."""
    data: dict[str, Any] = {}
    where = "<defaults>"
    if path is not None:
        where = str(path)
        data = read_yaml(Path(path))
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)})") from None
        set_dotted(data, key.strip(), value, item)
    return validate(data, where)


def read_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    """One config file as a mapping, with its ``base:`` chain merged under it."""
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"{where}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of sections at the top level")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{where}: base: expected the path of another config file")
    if depth >= MAX_BASE_DEPTH:
        raise ConfigError(f"{where}: base: more than {MAX_BASE_DEPTH} levels of inheritance (a cycle?)")
    parent = path.parent / base
    if not parent.is_file():
        raise ConfigError(f"{where}: base: {parent}: config file not found")
    return merge(read_yaml(parent, depth + 1), data)


def validate(data: dict[str, Any], where: str = "<config>") -> RunConfig:
    """A ``RunConfig`` from a mapping, or a ``ConfigError`` naming ``where`` and the dotted key."""
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg} (got {err['input']!r})"
        more = f" (+{e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{where}: {key}: {msg}{more}") from None
    try:
        check(cfg)
    except ValueError as e:  # a stage or sweep composition: the message starts with its key
        key, msg = str(e).split(": ", 1) if ": " in str(e) else ("config", str(e))
        raise ConfigError(f"{where}: {key}: {msg}") from None
    return cfg


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved config (every default spelled out) as YAML."""
    write_text(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
