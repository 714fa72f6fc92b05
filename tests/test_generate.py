"""Generation on the built-in model: the system prompt is a per-call argument; a closed stream stops its generation;
errors reach the reader."""

from __future__ import annotations

import threading

import pytest

PROMPT = [{"role": "user", "content": "List thirty healthy foods, one per line, with a short note on each."}]


@pytest.fixture(scope="module")
def generator(base_model_dir):
    from medtune.inference.loading import load_generator

    gen, cfg = load_generator(str(base_model_dir), quantization="none")
    return gen, cfg.generation


def test_system_prompt_is_an_argument(generator):
    gen, _ = generator
    default, other, none = (gen.prompts([PROMPT], system)[0] for system in (None, "Answer in one line.", ""))
    assert gen.system_prompt and gen.system_prompt in default
    assert "Answer in one line." in other and gen.system_prompt not in other
    assert gen.system_prompt not in none and PROMPT[0]["content"] in none
    assert gen.prompts([PROMPT, PROMPT], ["A.", "B."]) == [gen.prompts([PROMPT], "A.")[0], gen.prompts([PROMPT], "B.")[0]]


def generating_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "medtune-generate" and t.is_alive()]


def count_forwards(model):
    calls = []
    return calls, model.register_forward_hook(lambda *_: calls.append(1))


def test_closing_a_stream_stops_its_generation(generator):
    gen, cfg = generator
    calls, hook = count_forwards(gen.model)
    try:
        whole = "".join(gen.stream(PROMPT, cfg, max_new_tokens=48, temperature=0.0))
        full = len(calls)
        assert full >= 40 and whole, "the reference answer must be long for the check to mean anything"
        calls.clear()
        before = set(threading.enumerate())
        stream = gen.stream(PROMPT, cfg, max_new_tokens=48, temperature=0.0)
        first = next(stream)
        stream.close()  # the reader goes away after one piece
        still_running = [t for t in set(threading.enumerate()) - before if t.is_alive()]
        for t in still_running:  # (only if the stream did not stop it) let it finish before counting
            t.join(timeout=300)
        forwards = len(calls)
    finally:
        hook.remove()
    assert whole.startswith(first)
    assert not still_running, "close() returned while the generation thread was still running"
    assert forwards < full / 2, f"{forwards} forward passes for a stream closed after one piece, {full} for the whole answer"


def test_an_error_inside_generate_is_raised_to_the_reader(generator):
    gen, cfg = generator
    out: list = []

    def read():
        try:
            out.append("".join(gen.stream(PROMPT, cfg, max_new_tokens=-1, temperature=0.0)))
        except Exception as e:  # noqa: BLE001 - the test inspects it
            out.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=120)
    assert not reader.is_alive(), "the reader hung waiting for text that never came"
    assert isinstance(out[0], ValueError) and "max_new_tokens" in str(out[0])
    assert not generating_threads()


def test_generation_reports_whether_it_stopped_on_eos(generator):
    """The generator, not a token count, says whether an answer ended on EOS or ran into max_new_tokens;
    the responder's finish_reason follows it."""
    from medtune.core.config import RunConfig
    from medtune.inference.responder import Responder

    gen, cfg = generator
    greedy = cfg.model_copy(update={"temperature": 0.0})
    short = [{"role": "user", "content": "Answer with one word only: is water wet? yes or no"}]
    texts = gen.prompts([short, PROMPT])
    (_, stopped_short), (_, stopped_long) = gen.generate_stopped(texts, greedy, max_new_tokens=12)
    assert stopped_short and not stopped_long
    answers = Responder(gen, RunConfig(generation=greedy), guardrails=False).answer_batch(
        [short[0]["content"], PROMPT[0]["content"]], max_new_tokens=12)
    assert [a.finish_reason for a in answers] == ["stop", "length"]


def test_repeat_blocking_counts_the_answer_not_the_prompt(generator):
    """no_repeat_ngram_size blocks repeats inside the answer only: the answer can still copy the prompt's words
    (a condition's name, a passage to cite), which transformers' own processor (penalize_prompt) forbids."""
    import torch

    gen, cfg = generator
    phrase = "Take the tablets with a full glass of water after breakfast."
    ask = [{"role": "user", "content": f"Repeat this sentence exactly, once: {phrase}"}]
    text = gen.prompts([ask])[0]
    enc = gen.tokenizer([text], return_tensors="pt", add_special_tokens=False)
    answers = {}
    for penalize in (False, True):
        greedy = cfg.model_copy(update={"temperature": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 4,
                                        "penalize_prompt": penalize})
        with torch.inference_mode():
            out = gen.model.generate(**enc, **gen._kwargs(greedy, 40, None, enc["input_ids"].shape[1]))
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        grams = [tuple(new[i:i + 4]) for i in range(len(new) - 3)]
        assert len(grams) == len(set(grams)), "a 4-gram repeated inside the answer"
        answers[penalize] = gen.tokenizer.decode(new, skip_special_tokens=True)
    assert "full glass of water after breakfast" in answers[False], answers[False]
    assert "full glass of water after breakfast" not in answers[True], answers[True]


def test_repeat_blocking_keeps_numbers(generator):
    """A number said twice is a repeated n-gram when the tokenizer splits digits: blocking it changed a dose
    ("500 mg ... 500 mg" came out "500 mg ... 50 mg"). Digits are never blocked; the control (no exemption) shows
    the garbling on the same prompt."""
    import torch

    from medtune.inference.penalties import answer_penalties

    gen, cfg = generator
    assert [gen.tokenizer.decode([i]) for i in gen.digit_ids] == list("0123456789")  # SmolLM2 splits numbers into digits
    phrase = "Take 500 mg in the morning and 500 mg at night."
    enc = gen.tokenizer(gen.prompts([[{"role": "user", "content": f"Repeat this sentence exactly, once: {phrase}"}]]),
                        return_tensors="pt", add_special_tokens=False)
    length = enc["input_ids"].shape[1]
    greedy = cfg.model_copy(update={"temperature": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 4, "penalize_prompt": False})
    answers = {}
    for name, processors in (("medtune", gen._kwargs(greedy, 30, None, length)["logits_processor"]),
                             ("no exemption", answer_penalties(1.0, 4, length))):
        with torch.inference_mode():
            out = gen.model.generate(**enc, max_new_tokens=30, do_sample=False, temperature=None, top_p=None, top_k=None,
                                     logits_processor=processors, pad_token_id=gen.tokenizer.pad_token_id)
        answers[name] = gen.tokenizer.decode(out[0, length:], skip_special_tokens=True)
    assert answers["medtune"].count("500") == 2, answers
    assert answers["no exemption"].count("500") == 1, answers  # the second dose was changed


def test_batches_go_longest_first_and_answers_come_back_in_order(generator):
    """A batch call generates the longest prompts together (little padding) and returns each answer at its
    prompt's place: the same answers, in input order, as one prompt at a time."""
    import torch

    gen, cfg = generator
    greedy = cfg.model_copy(update={"temperature": 0.0, "batch_size": 2})
    questions = ["What is a fever?", "My grandmother has had a cough for three weeks, worse at night, with some "
                 "green phlegm and a mild temperature in the evenings. What could it be and should she see a doctor?",
                 "Is a headache serious?", "I have been feeling tired all the time for a month even though I sleep "
                 "eight hours, and I get short of breath on the stairs. What should I check?", "Why do knees hurt?"]
    texts = gen.prompts([[{"role": "user", "content": q}] for q in questions])
    prefills = []
    hook = gen.model.register_forward_pre_hook(
        lambda _, args, kwargs: prefills.append(kwargs["input_ids"].shape[1]) if kwargs.get("input_ids") is not None
        and kwargs["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    try:
        together = gen.generate_from(texts, greedy, max_new_tokens=10)
    finally:
        hook.remove()
    lengths = sorted((gen.count_tokens(t) for t in texts), reverse=True)
    assert prefills == [lengths[0], lengths[2], lengths[4]]  # batches of 2 by length: the long pair, then shorter
    alone = [gen.generate_from([t], greedy, max_new_tokens=10)[0] for t in texts]
    assert together == alone and len(set(alone)) == len(alone)
    # on a CPU the generator allocates a static KV cache per call: the same answer as transformers' default cache
    assert gen._static_cache(greedy, 50) and not gen._static_cache(greedy.model_copy(update={"static_cache": False}), 50)
    enc = gen.tokenizer(texts[1], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = gen.model.generate(**enc, **gen._kwargs(greedy, 10, None, enc["input_ids"].shape[1]))
    assert gen.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() == alone[1]


def test_adapter_merged_answers_as_the_adapter_and_restores_the_base(base_model_dir):
    """Evaluation merges a LoRA adapter into the weights for the tuned model's answers: the same logits and
    greedy answers as the unmerged adapter, and after it the base weights are back (adapter off = the base)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from medtune.inference.loading import adapter_merged, load_generator

    gen, cfg = load_generator(str(base_model_dir), quantization="none")
    ids = gen.tokenizer(gen.prompts([PROMPT])[0], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        base_logits = gen.model(**ids).logits
    with adapter_merged(gen.model) as merged:
        assert merged is False  # a plain model: nothing to merge
    model = get_peft_model(gen.model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.02)  # a freshly made adapter changes nothing: give it weights
    model.eval()
    tuned = type(gen)(model, gen.tokenizer, gen.template, gen.system_prompt)
    greedy = cfg.generation.model_copy(update={"temperature": 0.0})
    with torch.inference_mode():
        adapter_logits = model(**ids).logits
    answers = tuned.generate_from(gen.prompts([PROMPT]), greedy, max_new_tokens=24)
    with adapter_merged(model) as merged, torch.inference_mode():
        assert merged is True
        merged_logits = model(**ids).logits
        assert tuned.generate_from(gen.prompts([PROMPT]), greedy, max_new_tokens=24) == answers
    assert (adapter_logits - base_logits).abs().max() > 0.1  # the control: the adapter does change the model
    assert torch.allclose(merged_logits, adapter_logits, atol=5e-4)  # fp32 rounding: 8e-5 measured
    with model.disable_adapter(), torch.inference_mode():
        assert torch.allclose(model(**ids).logits, base_logits, atol=1e-4)
    assert not any(getattr(m, "merged", False) for m in model.modules())
