"""``RunConfig``: every section of one run. This package is the schema: it imports no feature module."""

from __future__ import annotations

from pathlib import Path

from medtune.core.config.base import Section
from medtune.core.config.data import DataConfig
from medtune.core.config.evaluate import EvalConfig
from medtune.core.config.export import ExportConfig
from medtune.core.config.inference import ChatConfig, GenerationConfig, GuardrailsConfig, ServeConfig
from medtune.core.config.model import LoraConfig, ModelConfig
from medtune.core.config.recipe import StageConfig, SweepConfig
from medtune.core.config.retrieval import RetrievalConfig
from medtune.core.config.train import TrainConfig


class RunConfig(Section):
    name: str = "run"
    """Run name; the run directory is output_dir/name."""
    output_dir: str = "runs"
    """Parent directory of run directories."""
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    generation: GenerationConfig = GenerationConfig()
    eval: EvalConfig = EvalConfig()
    guardrails: GuardrailsConfig = GuardrailsConfig()
    chat: ChatConfig = ChatConfig()
    export: ExportConfig = ExportConfig()
    serve: ServeConfig = ServeConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    stages: list[StageConfig] = []
    """Multi-stage training: each stage overrides the sections above and starts from the previous stage's
    adapter (see medtune.training.stages); empty = one ordinary run."""
    sweep: SweepConfig | None = None
    """Hyperparameter sweep run by `medtune sweep` (see medtune.training.sweep); ignored by the other commands."""

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


