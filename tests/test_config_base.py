"""Config inheritance (``base: other.yaml``): the loader's rules, and the CPU recipes written as their
GPU twin plus a diff resolving to exactly the configs their former full files gave."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import REPO

from medtune.core.config import ConfigError, load_config
from medtune.core.config.load import MAX_BASE_DEPTH

RECIPES = REPO / "configs" / "recipes"
FULL = REPO / "tests" / "fixtures" / "recipes_full"
"""The CPU recipes as full files, before they inherited (``git show af74c9f:configs/recipes/*.cpu.yaml``)."""


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("full", sorted(FULL.glob("*.cpu.yaml")), ids=lambda p: p.name)
def test_cpu_recipe_resolves_to_its_former_full_file(full):
    recipe = RECIPES / full.name
    assert yaml.safe_load(recipe.read_text())["base"] == full.name.replace(".cpu.yaml", ".yaml")
    assert load_config(recipe).model_dump(mode="json") == load_config(full).model_dump(mode="json")


NEWER = {"safety.cpu.yaml", "grounded.cpu.yaml"}
"""CPU recipes written with ``base:`` from the start: they have no former full file."""


def test_every_cpu_recipe_has_its_former_full_file():
    assert {p.name for p in RECIPES.glob("*.cpu.yaml")} - NEWER == {p.name for p in FULL.glob("*.cpu.yaml")}


def test_chain_merges_mappings_key_by_key_and_lists_replace(tmp_path):
    write(tmp_path / "grand.yaml", {"name": "grand", "train": {"epochs": 3, "batch_size": 8, "report_to": ["tensorboard"]},
                                    "lora": {"r": 32}})
    write(tmp_path / "parent.yaml", {"base": "grand.yaml", "name": "parent", "train": {"batch_size": 2, "eval_steps": 10}})
    write(tmp_path / "child.yaml", {"base": "parent.yaml", "train": {"report_to": [], "eval_steps": None}, "lora": {"alpha": 8}})
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.name == "parent"                                    # inherited through one level
    assert (cfg.train.epochs, cfg.train.batch_size) == (3, 2)      # grand's key kept, parent's wins over grand's
    assert cfg.train.report_to == []                               # a list replaces, never appends
    assert cfg.train.eval_steps is None                            # null sets an inherited key back to "none"
    assert (cfg.lora.r, cfg.lora.alpha) == (32, 8)
    parent = load_config(tmp_path / "parent.yaml")
    assert (parent.train.report_to, parent.train.eval_steps) == (["tensorboard"], 10)


def test_base_is_relative_to_the_file_not_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "common" / "gpu.yaml", {"name": "gpu", "train": {"learning_rate": 0.003}})
    child = write(tmp_path / "recipes" / "cpu.yaml", {"base": "../common/gpu.yaml", "name": "cpu"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(child)
    assert (cfg.name, cfg.train.learning_rate) == ("cpu", 0.003)


def test_missing_base_names_the_missing_file(tmp_path):
    child = write(tmp_path / "child.yaml", {"base": "nowhere/gpu.yaml"})
    with pytest.raises(ConfigError, match=r"child\.yaml: base: .*nowhere/gpu\.yaml: config file not found"):
        load_config(child)


def test_a_cycle_stops_at_the_depth_limit(tmp_path):
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match=rf"base: more than {MAX_BASE_DEPTH} levels of inheritance \(a cycle\?\)"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "self.yaml", {"base": "self.yaml"})
    with pytest.raises(ConfigError, match="a cycle"):
        load_config(tmp_path / "self.yaml")


def test_a_chain_at_the_depth_limit_loads(tmp_path):
    write(tmp_path / "c0.yaml", {"train": {"seed": 0}})
    for i in range(1, MAX_BASE_DEPTH + 1):
        write(tmp_path / f"c{i}.yaml", {"base": f"c{i - 1}.yaml", "train": {"seed": i}})
    assert load_config(tmp_path / f"c{MAX_BASE_DEPTH}.yaml").train.seed == MAX_BASE_DEPTH
    write(tmp_path / "over.yaml", {"base": f"c{MAX_BASE_DEPTH}.yaml"})
    with pytest.raises(ConfigError, match="levels of inheritance"):
        load_config(tmp_path / "over.yaml")


def test_base_must_name_a_file(tmp_path):
    with pytest.raises(ConfigError, match=r"child\.yaml: base: expected the path of another config file"):
        load_config(write(tmp_path / "child.yaml", {"base": ["a.yaml"]}))


def test_set_overrides_an_inherited_key(tmp_path):
    write(tmp_path / "gpu.yaml", {"name": "gpu", "train": {"learning_rate": 0.003, "batch_size": 8}})
    child = write(tmp_path / "cpu.yaml", {"base": "gpu.yaml", "train": {"batch_size": 2}})
    cfg = load_config(child, ["train.learning_rate=0.1", "train.batch_size=4"])
    assert (cfg.train.learning_rate, cfg.train.batch_size, cfg.name) == (0.1, 4, "gpu")


def test_set_over_an_inherited_recipe():
    cfg = load_config(RECIPES / "chatdoctor_qlora.cpu.yaml", ["train.grad_accum=4", "data.eval_max=2"])
    assert (cfg.train.grad_accum, cfg.data.eval_max, cfg.train.max_steps) == (4, 2, 8)
