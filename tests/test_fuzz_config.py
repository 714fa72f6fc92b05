"""Property-based fuzzing of config loading (issue 17): random ``--set key=value`` overrides over the
schema's real keys, and random YAML documents. Property: a valid ``RunConfig`` or a ``ConfigError``
whose message names the file (``<defaults>`` or the path) or the ``--set`` item — never another exception.

The two gaps this fuzzing found in ``core/config/load.py`` (a ``--set`` value that is not YAML, a
config file that is not UTF-8) are fixed; their minimal inputs are the regression tests at the end."""

from __future__ import annotations

import tempfile
from pathlib import Path

import fuzz_profiles  # noqa: F401  (registers and loads the hypothesis profile)
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from medtune.core.config import ConfigError, RunConfig, load_config

pytestmark = pytest.mark.timeout(600)


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        keys.append(prefix + name)
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys += _keys(sub, f"{prefix}{name}.")
    return keys


KEYS = _keys(RunConfig)
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(["", "0", "-1", "1e309", "chat", "skip", "raise", "cpu", "auto", "[]", "{}", "~"]),
)
VALUE = st.recursive(
    SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS + ["x"]), inner, max_size=3)),
    max_leaves=6,
)
KEY = st.one_of(st.sampled_from(KEYS), st.builds(lambda k, s: f"{k}.{s}", st.sampled_from(KEYS), st.sampled_from(["x", "path", "0", ""])))


def _flow(value) -> str:
    """A value as one line of YAML, as a user would type it after ``--set key=``."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


OVERRIDE = st.one_of(
    st.builds(lambda k, v: f"{k}={_flow(v)}", KEY, VALUE),
    st.builds(lambda k, t: f"{k}={t}", KEY, st.text(max_size=12)),  # typed by hand, YAML or not
    st.builds(lambda k: k, KEY),  # no '='
    st.builds(lambda v: f"={_flow(v)}", VALUE),  # no key
)


def _check(call, names: str) -> None:
    try:
        cfg = call()
    except ConfigError as e:
        assert str(e).startswith(names) or str(e).startswith("--set "), e
        return
    assert isinstance(cfg, RunConfig)


@given(overrides=st.lists(OVERRIDE, max_size=4))
def test_fuzz_set_overrides(overrides: list[str]) -> None:
    _check(lambda: load_config(None, overrides), "<defaults>")


def _tree(keys: list[str], values: list) -> dict:
    out: dict = {}
    for key, value in zip(keys, values, strict=False):
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[last] = value
    return out


DOCUMENT = st.one_of(
    st.builds(
        lambda ks, vs: yaml.safe_dump(_tree(ks, vs), allow_unicode=True),
        st.lists(st.sampled_from(KEYS), max_size=6),
        st.lists(VALUE, max_size=6),
    ),
    st.builds(lambda v: yaml.safe_dump(v), VALUE),
    st.text(max_size=60),
    st.sampled_from(
        ["", "---\n", "a: [", "&a [*a]", "data: &x {sources: *x}", "key: value\n  bad indent: 1", "\t- x",
         "!!python/object:os.system {}", "base: 5", "base: missing.yaml", "base: ''", "model: {name: 1}\nmodel: {name: 2}"]
    ),
)


@given(document=DOCUMENT, overrides=st.lists(OVERRIDE, max_size=2))
def test_fuzz_yaml_documents(document: str, overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.yaml"
        path.write_text(document, encoding="utf-8")
        _check(lambda: load_config(path, overrides), tmp)  # this file, or the missing file its ``base:`` names


# --- what the fuzzing found in core/config/load.py, fixed there -------------------------------------


@pytest.mark.parametrize("item", ["train.learning_rate=[", "name=a: b: c", "name=!!python/object:os.system {}"])
def test_set_value_that_is_not_yaml_is_a_config_error(item):
    with pytest.raises(ConfigError, match="--set"):
        load_config(None, [item])


def test_config_file_not_utf8_is_a_config_error(tmp_path):
    (tmp_path / "run.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="run.yaml"):
        load_config(tmp_path / "run.yaml")
