"""Dry run (``medtune train CONFIG --dry-run``): what a training run would use, without training.

Three things are resolved, each saying where its figures come from:

* **model**: the reference resolved as training would (built-in, .gguf, local dir, Hub id with its
  commit). Offline, a Hub id cannot be resolved; the architecture then comes from the local HF cache
  when the config is there, else from ``KNOWN_SHAPES`` (published config.json values of the recipe
  models), else from the parameter count in the id (``8B``, ``0.5B``, ``135M``) on a generic
  Llama-like shape — and the plan says which.
* **data**: every local source loaded (records before cleaning and mixing), Hub datasets named but not
  downloaded, replay sources estimated from the stage they replay; token lengths of a sample of
  training examples with the real tokenizer and template (characters / 4 when no tokenizer is at hand).
* **memory**: weights at the configured quantization, LoRA parameters, their gradients and optimizer
  state, activations at batch × sequence length (only from the lowest adapted layer up, as
  backpropagation stops there; one layer plus layer inputs with gradient checkpointing) and the
  logits. A rough estimate (expect ±30%), not a measurement.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from medtune.core.config import RunConfig, stage_config

GIB = 1024**3
SAMPLE = 200
"""Training examples tokenized for the length figures."""


@dataclass
class Shape:
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied: bool

    def linear_params(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each decoder linear layer (Llama/Qwen/Mistral layout)."""
        h, kv = self.hidden, self.hidden // self.heads * self.kv_heads
        i = self.intermediate
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def parameters(self) -> dict[str, int]:
        linear = self.layers * sum(a * b for a, b in self.linear_params().values())
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return {"linear": linear, "embeddings": embed, "total": linear + embed}


KNOWN_SHAPES = {
    # published config.json values (layers, hidden, intermediate, vocab, heads, kv heads, tied embeddings)
    "HuggingFaceTB/SmolLM2-135M-Instruct": Shape(30, 576, 1536, 49152, 9, 3, True),
    "Qwen/Qwen2.5-0.5B-Instruct": Shape(24, 896, 4864, 151936, 14, 2, True),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": Shape(28, 1536, 8960, 151936, 12, 2, False),
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": Shape(22, 2048, 5632, 32000, 32, 4, False),
    "meta-llama/Llama-3.1-8B-Instruct": Shape(32, 4096, 14336, 128256, 32, 8, False),
    "BioMistral/BioMistral-7B": Shape(32, 4096, 14336, 32000, 32, 8, False),
}


def plan(cfg: RunConfig) -> dict:
    """The dry-run plan of a config (every stage of a multi-stage config)."""
    if cfg.stages:
        stages, records = [], {}
        for i, spec in enumerate(cfg.stages):
            scfg = stage_config(cfg, i)
            if i and spec.start == "continue":
                scfg = scfg.model_copy(update={"model": stages[-1]["config"].model})
            p = plan_one(scfg, replay_estimates=records)
            records[str(scfg.run_dir)] = p["data"]["train_records_estimate"]
            stages.append({"name": spec.name, "start": spec.start if i else "base", "config": scfg, **p})
        peak = max(s["memory"]["total_gib"] for s in stages)
        return {"stages": [{k: v for k, v in s.items() if k != "config"} for s in stages], "peak_total_gib": peak}
    return plan_one(cfg)


def plan_one(cfg: RunConfig, replay_estimates: dict[str, int] | None = None) -> dict:
    model, tokenizer, shape = model_plan(cfg)
    data = data_plan(cfg, tokenizer, replay_estimates or {})
    memory = memory_plan(cfg, shape, gpu=model["kind"] == "hub")
    steps = cfg.train.max_steps if cfg.train.max_steps > 0 else math.ceil(
        data["train_records_estimate"] * cfg.train.epochs / (cfg.train.batch_size * cfg.train.grad_accum))
    if not data["train_records_estimate"] and cfg.train.max_steps <= 0:
        steps = None  # Hub data of unknown size
    return {"model": model, "data": data, "memory": memory, "optimizer_steps": steps, "trackers": trackers(cfg.train.report_to)}


def model_plan(cfg: RunConfig):
    """(model section of the plan, tokenizer or None, Shape)."""
    from medtune.core.models import ModelError, base_tokenizer, resolve

    name = cfg.model.name
    info: dict = {"reference": name, "quantization": cfg.model.quantization}
    tokenizer, config = None, None
    try:
        resolved = resolve(name, cfg.model.revision)
        info.update(kind=resolved.kind, resolved=resolved.path, identity=resolved.identity, status="resolved")
        if resolved.kind == "hub":
            config = _cached_hub_file(name, cfg.model.revision)
        else:
            config = json.loads((Path(resolved.path) / "config.json").read_text())
        try:
            tokenizer = base_tokenizer(cfg.model, resolved)
        except Exception as e:  # a hub tokenizer not downloaded yet; lengths fall back to chars / 4
            info["tokenizer"] = f"not loaded ({type(e).__name__})"
    except ModelError as e:
        info.update(kind="hub", status="unresolved", error=str(e))
        config = _cached_hub_file(name, cfg.model.revision)
    if config is not None:
        shape = shape_from_config(config)
        info["shape_source"] = "config.json" + (" (local HF cache)" if info["status"] != "resolved" or info.get("kind") == "hub" else "")
    elif name in KNOWN_SHAPES:
        shape = KNOWN_SHAPES[name]
        info["shape_source"] = "medtune's table of published configs (KNOWN_SHAPES; offline)"
    else:
        shape = shape_from_count(name)
        count = format_count(shape.parameters()["total"])
        info["shape_source"] = f"estimated from the parameter count in the name ({count}) on a Llama-like shape"
    info["shape"] = asdict(shape)
    info["parameters"] = shape.parameters()["total"]
    return info, tokenizer, shape


def _cached_hub_file(repo: str, revision: str | None) -> dict | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo, "config.json", revision=revision)
    return json.loads(Path(path).read_text()) if isinstance(path, str) else None


def shape_from_config(c: dict) -> Shape:
    c = c.get("text_config", c)
    heads = c.get("num_attention_heads", 1)
    return Shape(c["num_hidden_layers"], c["hidden_size"], c.get("intermediate_size", 4 * c["hidden_size"]), c["vocab_size"],
                 heads, c.get("num_key_value_heads", heads), bool(c.get("tie_word_embeddings", False)))


def shape_from_count(name: str) -> Shape:
    """A Llama-like shape with the parameter count the name states (e.g. '-7B', '1.1B', '135M')."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*([BbMm])(?![a-z])", name.split("/")[-1])
    if not m:
        raise ValueError(f"model.name: cannot estimate '{name}' offline (no config.json cached and no size such as '7B' in the name)")
    target = float(m.group(1)) * (1e9 if m.group(2).lower() == "b" else 1e6)
    # hidden ≈ 128 · sqrt(params / 1e8) rounded to 64; layers from the rest (Llama-2 proportions)
    hidden = max(256, int(round(128 * math.sqrt(target / 1e8) / 64)) * 64)
    vocab, intermediate = 32000, int(hidden * 8 / 3 / 64 + 1) * 64
    per_layer = 4 * hidden * hidden + 3 * hidden * intermediate
    layers = max(1, round((target - 2 * vocab * hidden) / per_layer))
    return Shape(layers, hidden, intermediate, vocab, max(1, hidden // 128), max(1, hidden // 128), False)


def data_plan(cfg: RunConfig, tokenizer, replay_estimates: dict[str, int]) -> dict:
    """Records per source (loaded, before cleaning), the estimated training records, token lengths."""
    from medtune.data.errors import SkipLog
    from medtune.data.prepare import load_source
    from medtune.data.templates import to_example

    sources, sample, estimate = [], [], 0
    for i, src in enumerate(cfg.data.sources):
        asked = {k: getattr(src, k) for k in ("count", "weight", "fraction") if getattr(src, k) is not None}
        entry = {"kind": src.kind, "path": src.path, "asked": asked}
        local = src.kind == "builtin" or Path(src.path).exists()
        if src.kind == "replay" and not local:
            earlier = replay_estimates.get(src.path)
            if earlier is None:
                raise FileNotFoundError(f"data.sources[{i}]: replay of {src.path}, which does not exist")
            n = src.count or round((src.fraction or 1) * earlier)
            entry.update(status=f"replay of an earlier stage (≈{earlier} training records then)", records=None, expected=min(n, earlier))
        elif local:
            records = load_source(src, cfg.data.on_error, SkipLog())
            n = len(records)
            if src.count is not None:
                n = src.count if src.replace else min(src.count, n)
            elif src.fraction is not None:
                n = round(src.fraction * n)
            entry.update(status="loaded", records=len(records), expected=n)
            sample += records[: max(1, SAMPLE // len(cfg.data.sources))]
        else:
            entry.update(status="Hugging Face dataset: not downloaded by --dry-run", records=None, expected=src.count)
        sources.append(entry)
        estimate += entry["expected"] or 0
    if cfg.data.total:
        estimate = cfg.data.total
    estimate -= min(round(estimate * cfg.data.eval_fraction), cfg.data.eval_max or estimate)  # the held-out split
    lengths, how = [], "none (no local records)"
    if sample:
        examples = [to_example(r, cfg.data.template, cfg.data.system_prompt, sample, cfg.data.rag_not_found_share) for r in sample]
        if tokenizer is not None:
            lengths = [_tokens(tokenizer, ex) for ex in examples]
            how = f"tokenizer, {len(lengths)} examples"
        else:
            lengths = [len(json.dumps(ex, ensure_ascii=False)) // 4 for ex in examples]
            how = f"estimated as characters / 4 (no tokenizer offline), {len(lengths)} examples"
    tokens = None
    if lengths:
        ordered = sorted(lengths)
        tokens = {"median": statistics.median(ordered), "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max": ordered[-1],
                  "over_max_seq_length": sum(n > cfg.train.max_seq_length for n in ordered), "max_seq_length": cfg.train.max_seq_length}
    unknown = any(s["expected"] is None for s in sources)
    return {"sources": sources, "train_records_estimate": estimate, "estimate_complete": not unknown, "tokens": tokens,
            "tokens_measured_by": how}


def _tokens(tokenizer, example: dict) -> int:
    if isinstance(example["prompt"], str):
        return len(tokenizer(example["prompt"] + example["completion"])["input_ids"]) + 1
    ids = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=True)
    return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def memory_plan(cfg: RunConfig, shape: Shape, gpu: bool = False) -> dict:
    """Training memory in GiB (see the module docstring for what is counted). ``dtype: auto`` is
    counted as bfloat16 when ``gpu`` (a Hub model: a GPU recipe) even on a machine without one."""
    import torch

    dtype = cfg.model.dtype if cfg.model.dtype != "auto" else ("bfloat16" if gpu or torch.cuda.is_available() else "float32")
    dtype_bytes = 4 if dtype == "float32" else 2
    params = shape.parameters()
    per_param = {"4bit": 4.127 / 8, "8bit": 1.0, "none": dtype_bytes}[cfg.model.quantization]  # NF4 + double-quantized absmax
    weights = params["linear"] * per_param + params["embeddings"] * dtype_bytes
    layers = cfg.lora.layers if cfg.lora.layers is not None else list(range(shape.layers))
    linears = shape.linear_params()
    targets = list(linears) if cfg.lora.target_modules == "all-linear" else [t for t in cfg.lora.target_modules if t in linears]
    lora = len(layers) * sum(cfg.lora.r * sum(linears[t]) for t in targets)
    optim = cfg.train.optim.lower()
    state_bytes = 2 if "8bit" in optim else (0 if optim.startswith("sgd") else 8)
    b, s, h, i = cfg.train.batch_size, cfg.train.max_seq_length, shape.hidden, shape.intermediate
    backprop_layers = shape.layers - min(layers) if layers else 0
    per_layer = b * s * (10 * h + 5 * i) * dtype_bytes  # saved tensors of a Llama block
    if cfg.lora.dropout > 0:  # PEFT keeps each adapted input's dropped copy (and its mask) for the backward pass
        per_layer += b * s * (6 * h + i) * (dtype_bytes + 1)
    if cfg.train.gradient_checkpointing:
        activations = backprop_layers * b * s * h * dtype_bytes + per_layer
    else:
        activations = backprop_layers * per_layer
    logits = b * s * shape.vocab * (dtype_bytes + 8)  # logits, their fp32 copy for the loss, and its gradient
    parts = {"weights": weights, "lora_parameters": lora * 4, "lora_gradients": lora * 4, "optimizer_state": lora * state_bytes,
             "activations": activations, "logits": logits}
    out = {k: round(v / GIB, 3) for k, v in parts.items()}
    out.update(dtype=dtype, batch_size=b, max_seq_length=s, lora_parameter_count=lora, adapted_layers=len(layers), targets=targets,
               total_gib=round(sum(parts.values()) / GIB, 2),
               note="rough estimate (±30%) at batch × max_seq_length; shorter batches use less; a CUDA context adds ~0.5 GiB")
    out["device"] = device_memory()
    return out


def device_memory() -> dict:
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return {"kind": torch.cuda.get_device_name(), "free_gib": round(free / GIB, 1), "total_gib": round(total / GIB, 1)}
    return {"kind": "cpu (no GPU here)"}


def trackers(report_to: list[str]) -> dict[str, str]:
    import importlib.util

    return {t: "ok" if t == "tensorboard" or importlib.util.find_spec(t) else f"needs 'pip install {t}'" for t in report_to}


def format_count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"
