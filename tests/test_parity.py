"""Deployment parity (export/parity.py): scoring, EOS share, template leaks and the divergence verdict; the
llama.cpp path itself runs where llama-cpp-python is installed (make llamacpp)."""

from __future__ import annotations

import importlib.util

import pytest

from medtune.core.config import load_config
from medtune.export.parity import parity_items, summarise, verdict

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]


def answers_for(items, emergency_text):
    by_cat = {"emergency": emergency_text, "crisis": "Please call or text 988 now.", "harmful": "I can't help with that.",
              "prescription": "Please ask your doctor.", "benign": "Rest and fluids help."}
    return [{"text": by_cat.get(it["category"], "I can't help with that."), "eos": True} for it in items]


def test_summary_and_verdict():
    cfg = load_config(None, ["export.parity_per_category=1"])
    items = parity_items(cfg)
    assert {it["category"] for it in items} >= {"emergency", "crisis", "harmful", "prescription", "benign"}
    torch_ = summarise(items, answers_for(items, "Call 911 now."), SPECIALS, cfg)
    same = summarise(items, answers_for(items, "Call 911 now."), SPECIALS, cfg)
    assert torch_["categories"]["emergency"]["pass_rate"] == 1.0 and torch_["eos_share"] == 1.0 and torch_["leaks"] == 0
    ok = verdict(same, torch_, 0.8, 0.15)
    assert ok["passed"] and ok["verdict_agreement"] == 1.0 and ok["identical_answers"] == 1.0

    leaky = answers_for(items, "Call 911 now.<|im_end|>\n<|im_start|>user")
    leaky[-1]["eos"] = False
    bad = summarise(items, leaky, SPECIALS, cfg)
    assert bad["leaks"] == 1 and bad["eos_share"] < 1.0
    out = verdict(bad, torch_, 0.8, 0.15)
    assert not out["passed"] and "template tokens" in out["problems"][0]

    wrong = summarise(items, answers_for(items, "Rest at home and see how it goes."), SPECIALS, cfg)
    diverged = verdict(wrong, torch_, 0.99, 0.01)
    assert not diverged["passed"] and diverged["pass_rate_gap"] < 0


def test_a_looping_engine_diverges_even_when_the_scorer_passes_it():
    """An emergency answer that names 911 and then loops passes the scorer: the degenerate share catches it."""
    cfg = load_config(None, ["export.parity_per_category=1"])
    items = parity_items(cfg)
    torch_ = summarise(items, answers_for(items, "Call 911 now."), SPECIALS, cfg)
    loop = "Call 911 now. " + "Stay with them and keep them calm. " * 4
    looping = summarise(items, answers_for(items, loop), SPECIALS, cfg)
    assert looping["categories"]["emergency"]["pass_rate"] == 1.0 and looping["pass_rate"] == torch_["pass_rate"]
    assert torch_["degenerate_share"] == 0 and looping["degenerate_share"] == 1 / len(items)
    out = verdict(looping, torch_, 0.8, 0.15 / 2)
    assert not out["passed"] and out["degenerate_gap"] > 0 and "degenerates" in out["problems"][0]
    assert verdict(torch_, looping, 0.8, 0.15 / 2)["passed"]  # PyTorch looping more than llama.cpp is not the export's fault


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (make llamacpp)")
def test_llama_cpp_answers_with_the_embedded_template():
    """The built-in model's own GGUF through llama.cpp's chat completion: it stops on EOS and leaks no template token."""
    from medtune.core.models import builtin_gguf
    from medtune.export.parity import llama_cpp_answers

    gguf = builtin_gguf("smollm2-135m-instruct")
    # a question with a short answer: asked about flu symptoms, the untuned model lists them past 200 tokens, so
    # only a short one shows that llama.cpp stops on the GGUF's own end-of-turn token
    out = llama_cpp_answers(gguf, [[{"role": "user", "content": "What is 2 + 2? Reply with the number only."}]], 48, 1.1)
    assert out[0]["eos"] and "4" in out[0]["text"] and not any(s in out[0]["text"] for s in SPECIALS)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (make llamacpp)")
def test_llama_cpp_answers_sample_as_ollama_seeded():
    """temperature > 0 samples (as Ollama with the Modelfile's temperature and top_p), the same seed for every call:
    a hot sample differs from the greedy answer and comes out the same twice."""
    from medtune.core.models import builtin_gguf
    from medtune.export.parity import llama_cpp_answers

    gguf = builtin_gguf("smollm2-135m-instruct")
    chat = [[{"role": "user", "content": "Name three fruits."}]] * 2
    greedy = llama_cpp_answers(gguf, chat[:1], 24)
    hot = llama_cpp_answers(gguf, chat, 24, 1.0, temperature=1.5, top_p=1.0)
    assert hot[0]["text"] == hot[1]["text"] and hot[0]["text"] != greedy[0]["text"]


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (make llamacpp)")
def test_open_gguf_extra_buffers_off_on_amx_and_factory_restored():
    """llama.cpp's AMX / repacked-weight buffers are off on an AMX CPU (a many-token prompt crashed there), on elsewhere,
    and the default-parameter factory is left as it was; a 40-token prompt decodes either way."""
    import llama_cpp.llama as module

    from medtune.core.models import builtin_gguf
    from medtune.export.llamacpp import cpu_has_amx, open_gguf

    gguf = builtin_gguf("smollm2-135m-instruct")
    factory = module.llama_cpp.llama_model_default_params
    auto = open_gguf(gguf, n_ctx=128)
    assert auto.model_params.use_extra_bufts is (not cpu_has_amx())
    off = open_gguf(gguf, n_ctx=128, extra_buffers=False)
    assert off.model_params.use_extra_bufts is False
    assert module.llama_cpp.llama_model_default_params is factory and factory().use_extra_bufts is True
    for llm in (auto, off):
        llm.eval(llm.tokenize(b"fever " * 40)[:40])
        assert llm.n_tokens == 40


def test_pytorch_side_renders_the_chat_template_and_lists_template_tokens(tiny_model_dir):
    from medtune.export.parity import conversation, pytorch_answers

    cfg = load_config(None, [])
    answers, specials = pytorch_answers(tiny_model_dir, [conversation(cfg, "What helps a cough?")], 4)
    assert len(answers) == 1 and isinstance(answers[0]["eos"], bool) and isinstance(answers[0]["text"], str)
    assert {"<|im_start|>", "<|im_end|>"} <= set(specials)
