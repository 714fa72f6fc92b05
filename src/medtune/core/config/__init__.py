"""The one config schema. YAML files, ``--set key=value`` overrides and the Python API all
build the same ``RunConfig``; defaults live here and nowhere else.

One module per section (``model``, ``data``, ``train``, ``evaluate``, ``inference``, ``export``,
``recipe``), ``run`` for the whole, ``load`` for reading and validation, ``compose`` for the configs
of stages and sweep points. Every field has its meaning on the line under it (as LitGPT's
``args.py`` does). Validation errors come out as one line naming the file and the dotted key.
Feature modules import this package; it imports none of them.
"""

from medtune.core.config.base import ConfigError, Section
from medtune.core.config.compose import point_config, stage_config
from medtune.core.config.data import DEFAULT_SYSTEM_PROMPT, DataConfig, SourceConfig
from medtune.core.config.evaluate import EvalConfig, EvalSet, MCQBenchmark
from medtune.core.config.export import ExportConfig
from medtune.core.config.inference import (
    BUILTIN_ENCODER,
    DEFAULT_DISCLAIMER,
    REGIONS,
    ChatConfig,
    GenerationConfig,
    GuardrailsConfig,
    Region,
    ServeConfig,
)
from medtune.core.config.load import dump_config, load_config, validate
from medtune.core.config.model import LoraConfig, ModelConfig
from medtune.core.config.recipe import StageConfig, SweepConfig
from medtune.core.config.retrieval import IndexSourceConfig, RetrievalConfig
from medtune.core.config.run import RunConfig
from medtune.core.config.train import TRACKERS, TrainConfig

__all__ = [
    "BUILTIN_ENCODER", "DEFAULT_DISCLAIMER", "DEFAULT_SYSTEM_PROMPT", "REGIONS", "TRACKERS", "ChatConfig", "ConfigError", "DataConfig",
    "EvalConfig", "EvalSet", "ExportConfig", "GenerationConfig", "GuardrailsConfig", "LoraConfig", "MCQBenchmark", "ModelConfig", "Region",
    "RunConfig", "Section", "ServeConfig", "SourceConfig", "StageConfig", "SweepConfig", "TrainConfig", "dump_config", "load_config",
    "point_config", "stage_config", "validate",
    "IndexSourceConfig", "RetrievalConfig",
]
