from pathlib import Path

import pytest

from medtune.core.config import ConfigError, RunConfig, dump_config, load_config

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_yaml(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  learning_rate: 1.0e-4\nlora:\n  r: 8\n"))
    assert cfg.train.learning_rate == 1e-4 and cfg.lora.r == 8
    assert cfg.model.name == "smollm2-135m-instruct" and cfg.model.quantization == "4bit"


def test_set_overrides_win_over_yaml(tmp_path):
    cfg = load_config(
        write(tmp_path, "train:\n  learning_rate: 1.0e-4\n"), ["train.learning_rate=3e-4", "lora.target_modules=[q_proj, v_proj]"]
    )
    assert cfg.train.learning_rate == 3e-4
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]


def test_unknown_key_names_file_and_key(tmp_path):
    p = write(tmp_path, "train:\n  learning_rat: 1.0e-4\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and "train.learning_rat" in str(e.value) and "unknown key" in str(e.value)


def test_wrong_type_names_key(tmp_path):
    p = write(tmp_path, "train:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"train\.batch_size.*'many'"):
        load_config(p)


def test_bad_override_value(tmp_path):
    with pytest.raises(ConfigError, match=r"<defaults>: lora\.r"):
        load_config(None, ["lora.r=-3"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(None, ["lora.r"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(write(tmp_path, "train:\n  lr: [1, 2\n"))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["name=x", "train.max_steps=7"])
    dump_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg and isinstance(again, RunConfig)


@pytest.mark.parametrize(
    "path", sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.parent.name != "accelerate"), ids=lambda p: p.name
)
def test_shipped_configs_validate(path):
    load_config(path)
