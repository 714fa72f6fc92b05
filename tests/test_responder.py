"""medtune.inference.responder on the real built-in model: the one guarded answer path (batch, two-step, streamed),
the guardrails-off path, per-call system prompts, and closing a streamed reply."""

from __future__ import annotations

import threading

import pytest

from medtune.core.config import load_config
from medtune.guardrails import Guardrails
from medtune.inference.responder import Responder

EMERGENCY = "My father suddenly has crushing chest pain spreading to his left arm and he is sweating."
BENIGN = "What is a normal body temperature?"
LONG = "List thirty healthy foods, one per line, with a short note on each."


@pytest.fixture(scope="module")
def generator(builtin_generator):
    return builtin_generator


@pytest.fixture(scope="module")
def guard():
    return Guardrails()


def responder(generator, guard, *overrides, **kwargs) -> Responder:
    cfg = load_config(None, ["generation.temperature=0", "generation.max_new_tokens=8", *overrides])
    return Responder(generator, cfg, guard, **kwargs)


def generating_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "medtune-generate" and t.is_alive()]


def forwards(model):
    calls: list = []
    return calls, model.register_forward_hook(lambda *_: calls.append(1))


def test_batch_keeps_order_fixed_replies_skip_the_model_and_matches_the_single_and_streamed_answer(generator, guard):
    r = responder(generator, guard)
    calls, hook = forwards(generator.model)
    try:
        batch = r.answer_batch([BENIGN, EMERGENCY, "What causes a common cold?"])
        batch_forwards = len(calls)
    finally:
        hook.remove()
    assert [a.triage for a in batch] == ["general", "emergency", "general"]
    assert batch[1].answer.startswith("Call 911") and "fixed_reply" in batch[1].fired and batch[1].raw == "" and batch[1].prompt_tokens == 0
    assert batch_forwards <= 8  # the two model prompts generated together, in one batch of at most 8 steps
    for a in (batch[0], batch[2]):
        assert a.raw and a.answer.startswith(a.raw[:10]) and a.answer.endswith(guard.disclaimer) and a.thinking == ""
        assert 0 < a.completion_tokens <= 8 and a.prompt_tokens > 20 and a.finish_reason in ("stop", "length")
    single = r.answer(BENIGN)
    streamed = r.stream(BENIGN)
    assert "".join(text for kind, text in streamed if kind == "answer") == streamed.answer == single.answer
    assert streamed.done and streamed.completion_tokens == single.completion_tokens and streamed.finish_reason == single.finish_reason


def test_prepare_counts_the_prompt_before_generating(generator, guard):
    r = responder(generator, guard, "data.system_prompt=unused")
    turn = r.prepare(BENIGN, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], system="Answer briefly.",
                     max_new_tokens=3, temperature=None)
    assert not turn.fixed and turn.triage == "general" and turn.generation.max_new_tokens == 3
    assert turn.generation.temperature == 0  # None leaves the config's value
    assert turn.system == f"{generator.system_prompt}\n\nAnswer briefly." and turn.system in turn.text and "Hello." in turn.text
    assert turn.prompt_tokens == len(generator.tokenizer(turn.text, add_special_tokens=False)["input_ids"])
    fixed = r.prepare(EMERGENCY)
    assert fixed.fixed and fixed.text == "" and fixed.prompt_tokens == 0
    answer = r.complete(turn)
    assert answer.prompt_tokens == turn.prompt_tokens and answer.completion_tokens <= 3
    with pytest.raises(TypeError, match="unknown generation setting"):
        r.prepare(BENIGN, max_tokens=3)


def test_system_prompt_is_per_responder_and_per_call_never_on_the_shared_generator(generator, guard):
    persona = responder(generator, guard, system_prompt="You are a terse persona.")
    plain = responder(generator, guard)
    assert "You are a terse persona." in persona.prepare(BENIGN).text
    assert "You are a terse persona." not in plain.prepare(BENIGN).text and generator.system_prompt in plain.prepare(BENIGN).text
    prescription = plain.prepare("How much oxycodone should I take for my back pain?")
    assert prescription.triage == "prescription" and prescription.decision.system_addendum in prescription.text
    assert generator.system_prompt != "You are a terse persona."  # the generator is never changed (it is frozen)


def test_guardrails_off_is_the_raw_model(generator, guard):
    cfg = load_config(None, ["generation.temperature=0", "generation.max_new_tokens=6"])
    raw = Responder(generator, cfg, guardrails=False)
    assert raw.guardrails is None
    a = raw.answer(EMERGENCY)  # no triage: the model answers it
    assert a.triage is None and a.fired == [] and a.raw and a.answer == a.raw and guard.disclaimer not in a.answer
    assert raw.answer(BENIGN).answer == generator.generate([[{"role": "user", "content": BENIGN}]], cfg.generation)[0]


def test_safety_suite_records_whether_each_answer_ended_on_end_of_turn(generator):
    from medtune.evaluate.safety import load_suite, run_safety_suite

    items = [it for it in load_suite(per_category=1) if it["category"] in ("emergency", "benign")]
    cfg = load_config(None, ["generation.temperature=0", "generation.max_new_tokens=4"])
    raw = run_safety_suite(generator, cfg, items, guardrails=False)  # 4 tokens: every model answer is cut off
    assert [r["eos"] for r in raw["items"]] == [False, False] and raw["eos_share"] == 0
    guarded = run_safety_suite(generator, cfg, items, guardrails=True)  # the emergency reply is fixed, whole
    assert [r["eos"] for r in guarded["items"]] == [True, False] and guarded["eos_share"] == 0.5


def test_closing_a_reply_stops_its_generation(generator, guard):
    r = Responder(generator, load_config(None, ["generation.temperature=0"]), guardrails=False)
    calls, hook = forwards(generator.model)
    try:
        reply = r.stream(LONG, max_new_tokens=48)
        first = next(iter(reply))
        reply.close()
        after_one = len(calls)
        calls.clear()
        unread = r.stream(LONG, max_new_tokens=48)
        unread.close()  # before the first piece: nothing ever starts
    finally:
        hook.remove()
    assert first[0] == "answer" and first[1]
    assert not generating_threads() and after_one < 24 and calls == []
