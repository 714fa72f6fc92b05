"""Runs composed from one config: a stage of ``stages:`` and a point of ``sweep:``, each a complete
``RunConfig`` of its own. ``check`` runs every composition once when a config is loaded, so a bad
stage override or grid value is reported with its key before anything runs."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from medtune.core.config.base import ConfigError
from medtune.core.config.run import RunConfig

STAGE_SECTIONS = ("model", "lora", "data", "train", "generation", "eval")
"""Sections a stage may override."""


def merge(base: dict, override: dict) -> dict:
    """``override`` merged into ``base``: mappings merge key by key, anything else (lists too) replaces."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def set_dotted(data: dict, key: str, value: Any, item: str) -> None:
    """``data[a][b][c] = value`` for ``key`` 'a.b.c'; ``item`` is the override as the user wrote it (for errors)."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: '{part}' is not a section")
    node[parts[-1]] = value


def first_error(e: Exception) -> str:
    """A validation error as 'key: message'."""
    if not isinstance(e, ValidationError):
        return str(e)
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    return f"{key}: {msg}" if key else msg


def stage_config(cfg: RunConfig, index: int) -> RunConfig:
    """Stage ``index`` as a complete config of its own: the base sections with the stage's overrides
    merged in (mappings merge key by key, lists replace), run directory ``output_dir/name/<stage>``,
    and replay sources that name an earlier stage pointed at that stage's run directory."""
    stage = cfg.stages[index]
    data = cfg.model_dump(mode="json", exclude={"stages", "sweep"})
    for section in STAGE_SECTIONS:
        data[section] = merge(data[section], copy.deepcopy(getattr(stage, section)))
    if stage.method is not None:
        data["train"]["method"] = stage.method
    data["output_dir"] = str(cfg.run_dir)
    data["name"] = stage.name
    earlier = {s.name: i for i, s in enumerate(cfg.stages[:index])}
    for source in data["data"].get("sources", []):
        if isinstance(source, dict) and source.get("kind") == "replay":
            path = source.get("path")
            if path in earlier:
                source["path"] = str(cfg.run_dir / path)
            elif path in {s.name for s in cfg.stages[index:]}:
                raise ValueError(f"stages[{index}] ({stage.name}): replay of '{path}', which is not an earlier stage")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"stages[{index}] ({stage.name}): {first_error(e)}") from None


def point_config(cfg: RunConfig, point: dict[str, Any], seed: int | None, output_dir: str, name: str) -> RunConfig:
    """A sweep point (``{dotted key: value}``) at one training seed, as a complete config of its own."""
    data = cfg.model_dump(mode="json", exclude={"sweep"})
    for key, value in point.items():
        set_dotted(data, key, value, f"{key}={value}")
    if seed is not None:
        data["train"]["seed"] = seed
    data["output_dir"], data["name"] = output_dir, name
    return RunConfig.model_validate(data)


def check(cfg: RunConfig) -> None:
    """Every stage and every sweep value makes a valid config (ValueError naming the key otherwise)."""
    names = [s.name for s in cfg.stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stages: names must be unique, got {names}")
    for i in range(len(cfg.stages)):
        stage_config(cfg, i)
    if cfg.sweep is not None:
        for key, values in cfg.sweep.grid.items():
            for value in values:
                try:
                    point_config(cfg, {key: value}, None, cfg.output_dir, cfg.name)
                except (ValueError, ValidationError) as e:
                    raise ValueError(f"sweep.grid.{key}: {value!r} does not make a valid config ({first_error(e)})") from None
