"""``model`` and ``lora``: the base model and the adapter trained on it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medtune.core.config.base import Section


class ModelConfig(Section):
    name: str = "smollm2-135m-instruct"
    """Base model: built-in name, local .gguf file, local HF directory, or Hugging Face id."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for Hugging Face ids."""
    quantization: Literal["none", "4bit", "8bit"] = "4bit"
    """'4bit' = QLoRA (NF4, double quantization, bitsandbytes); 'none' = plain LoRA."""
    trust_remote_code: bool = False
    """Run Python code shipped with a Hub/local model (its ``auto_map``). Off: such a model is refused, not executed."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Compute dtype of the base model and of 4-bit matmuls; 'auto' = bfloat16 on a GPU, float32 on
    a CPU (CPUs without AVX512-BF16 run bf16 matmuls several times slower than fp32)."""

    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        import torch

        return "bfloat16" if torch.cuda.is_available() else "float32"


class LoraConfig(Section):
    r: int = Field(16, gt=0)
    """LoRA rank."""
    alpha: int = Field(32, gt=0)
    """LoRA scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rslora)."""
    dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the LoRA branch."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names to adapt, or 'all-linear'."""
    use_rslora: bool = False
    """Rank-stabilised LoRA scaling (alpha / sqrt(r))."""
    layers: list[int] | None = None
    """Adapt only these decoder layers (None = all); backpropagation stops below the lowest one."""
    init_adapter: str | None = None
    """Start from this saved adapter (a run's adapter/ directory) and keep training it instead of a fresh
    one; its own rank/alpha/targets apply (multi-stage 'continue' sets it)."""
