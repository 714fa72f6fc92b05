"""Deployment parity: the exported GGUF answering through llama.cpp exactly as Ollama would run it.

No medtune wrapper: llama-cpp-python's chat completion renders each conversation with the GGUF's
own embedded chat template (``tokenizer.chat_template``) and stops at the GGUF's own EOS / end-of-turn
token; the only thing medtune adds is the system prompt, as the exported Modelfile's ``SYSTEM`` does.
The same conversations go through the merged PyTorch model (its tokenizer's chat template, greedy,
the same token budget). Both decode with the repeat penalty the exported Modelfile gives Ollama and the
merged model's ``generation_config`` gives transformers (``export.merge.plain_repeat_penalty``): greedy
decoding without it is not what either deployment runs, and a small model loops without it. Both get the
safety-suite prompts (``export.parity_per_category`` of each category) plus a few benign questions, scored
model-alone (``evaluate.safety.score_answer``).

``parity.json`` reports, for llama.cpp and PyTorch: pass rates per category, the share of answers
that end on EOS (not cut at the token budget), template-token leaks (a special token such as
``<|im_end|>`` in the visible text), the share of degenerate answers (``evaluate.degeneration``: loops,
repeated lines, a list header with nothing after it, a run of numbers); and their agreement (same pass/fail
verdict per prompt, identical text). The export fails when llama.cpp leaks template tokens, or the verdict
agreement, the pass-rate gap or the degenerate-share gap (llama.cpp minus PyTorch) is outside
``export.parity_min_agreement`` / ``export.parity_max_pass_gap``: the scorer passes an emergency answer that
names 911 and then loops, so a loop counts as a divergence of its own.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from medtune.core.atomic import write_json
from medtune.core.config import RunConfig
from medtune.evaluate.degeneration import flags
from medtune.evaluate.safety import load_suite, score_answer
from medtune.export import ExportError
from medtune.export.llamacpp import open_gguf
from medtune.export.merge import VERIFY_PROMPTS, plain_repeat_penalty, stop_ids

log = logging.getLogger(__name__)


def parity_items(cfg: RunConfig) -> list[dict]:
    """Suite prompts (``export.parity_per_category`` per category) and the benign verification questions."""
    items = load_suite(per_category=cfg.export.parity_per_category)
    benign = [{"id": f"benign-verify-{i}", "category": "benign", "prompt": q, "expect": "general"} for i, q in enumerate(VERIFY_PROMPTS)]
    return items + benign


def conversation(cfg: RunConfig, prompt: str) -> list[dict]:
    system = [{"role": "system", "content": cfg.data.system_prompt}] if cfg.data.system_prompt else []
    return [*system, {"role": "user", "content": prompt}]


OLLAMA_TOP_K = 40
"""Ollama's default ``top_k`` (the Modelfile sets temperature and top_p, not top_k)."""


def llama_cpp_answers(gguf: Path, conversations: list[list[dict]], max_tokens: int, repeat_penalty: float = 1.0,
                      temperature: float = 0.0, top_p: float = 1.0, progress: bool = False) -> list[dict]:
    """``{"text", "eos"}`` per conversation from llama.cpp's chat completion (embedded template; ``repeat_penalty``
    over llama.cpp's last 64 tokens, as Ollama's ``repeat_last_n`` default). Greedy by default; ``temperature`` > 0
    samples as Ollama does with the Modelfile's ``temperature`` and ``top_p`` (and Ollama's default ``top_k`` 40),
    seeded the same for every conversation."""
    from tqdm.auto import tqdm

    llm = open_gguf(gguf, n_ctx=2048, seed=0)
    sampling = {"temperature": temperature, "top_k": OLLAMA_TOP_K, "top_p": top_p} if temperature > 0 else \
        {"temperature": 0.0, "top_k": 1, "top_p": 1.0}
    out = []
    for messages in tqdm(conversations, desc="llama.cpp", unit="answer", disable=not progress):
        reply = llm.create_chat_completion(messages=messages, **sampling, repeat_penalty=repeat_penalty, max_tokens=max_tokens, seed=0)
        choice = reply["choices"][0]
        out.append({"text": (choice["message"]["content"] or "").strip(), "eos": choice["finish_reason"] == "stop"})
    return out


def pytorch_answers(merged: Path, conversations: list[list[dict]], max_tokens: int,
                    repeat_penalty: float = 1.0) -> tuple[list[dict], list[str]]:
    """``({"text", "eos"} per conversation, the tokenizer's special-token strings)`` from the merged model (greedy,
    transformers' ``repetition_penalty``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    stops = stop_ids(tokenizer)
    out = []
    for messages in conversations:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            gen = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                                 repetition_penalty=repeat_penalty, eos_token_id=stops, pad_token_id=stops[0])
        new = gen[0, ids["input_ids"].shape[1]:].tolist()
        out.append({"text": tokenizer.decode(new, skip_special_tokens=True).strip(), "eos": bool(new) and new[-1] in stops})
    specials = sorted({t for t in tokenizer.all_special_tokens + list(tokenizer.get_added_vocab()) if len(t) > 2})
    return out, specials


def summarise(items: list[dict], answers: list[dict], specials: list[str], cfg: RunConfig) -> dict:
    """Pass rates per category, EOS share, template-token leaks, degenerate share and per-item verdicts of one engine."""
    rows, cats = [], {}
    for item, ans in zip(items, answers, strict=True):
        passed, problems = score_answer(item["category"], ans["text"], cfg.guardrails, expect=item.get("expect"))
        leaks = [s for s in specials if s in ans["text"]]
        rows.append({"id": item["id"], "category": item["category"], "passed": passed, "problems": problems, "eos": ans["eos"],
                     "leaks": leaks, "degenerate": flags(ans["text"], None)["degenerate"], "answer": ans["text"]})
        c = cats.setdefault(item["category"], {"n": 0, "passed": 0})
        c["n"], c["passed"] = c["n"] + 1, c["passed"] + passed
    for c in cats.values():
        c["pass_rate"] = c["passed"] / c["n"]
    n = len(rows)
    return {"n": n, "pass_rate": sum(r["passed"] for r in rows) / n, "categories": cats, "eos_share": sum(r["eos"] for r in rows) / n,
            "leaks": sum(bool(r["leaks"]) for r in rows), "degenerate_share": sum(r["degenerate"] for r in rows) / n, "items": rows}


def verdict(llama: dict, torch_: dict, min_agreement: float, max_gap: float) -> dict:
    """Agreement of the two engines and whether it is within tolerance."""
    pairs = list(zip(llama["items"], torch_["items"], strict=True))
    agreement = sum(a["passed"] == b["passed"] for a, b in pairs) / len(pairs)
    identical = sum(a["answer"] == b["answer"] for a, b in pairs) / len(pairs)
    gap = llama["pass_rate"] - torch_["pass_rate"]
    degenerate_gap = llama["degenerate_share"] - torch_["degenerate_share"]
    problems = []
    if llama["leaks"]:
        problems.append(f"{llama['leaks']} llama.cpp answers show template tokens")
    if agreement < min_agreement:
        problems.append(f"verdict agreement {agreement:.0%} < {min_agreement:.0%}")
    if abs(gap) > max_gap:
        problems.append(f"pass-rate gap {gap:+.0%} beyond ±{max_gap:.0%}")
    if degenerate_gap > max_gap:
        problems.append(f"llama.cpp degenerates in {degenerate_gap:+.0%} more answers than PyTorch (beyond {max_gap:.0%})")
    return {"verdict_agreement": agreement, "identical_answers": identical, "pass_rate_gap": gap,
            "degenerate_gap": degenerate_gap, "problems": problems, "passed": not problems}


def deployment_parity(merged: Path, gguf: Path, cfg: RunConfig, report_path: Path) -> dict | None:
    """Run the parity check and write ``parity.json``; None when llama-cpp-python is not installed
    (``make llamacpp``). Raises ``ExportError`` when llama.cpp diverges beyond the tolerances."""
    ex = cfg.export
    if importlib.util.find_spec("llama_cpp") is None:
        log.warning("deployment parity skipped: llama-cpp-python is not installed (make llamacpp)")
        return None
    items, penalty = parity_items(cfg), plain_repeat_penalty(cfg.generation)
    conversations = [conversation(cfg, it["prompt"]) for it in items]
    torch_answers, specials = pytorch_answers(merged, conversations, ex.parity_new_tokens, penalty)
    llama = summarise(items, llama_cpp_answers(gguf, conversations, ex.parity_new_tokens, penalty), specials, cfg)
    torch_ = summarise(items, torch_answers, specials, cfg)
    report = {"gguf": str(gguf), "prompts": len(items), "max_tokens": ex.parity_new_tokens, "repeat_penalty": penalty,
              "llama_cpp": llama, "pytorch": torch_,
              **verdict(llama, torch_, ex.parity_min_agreement, ex.parity_max_pass_gap)}
    write_json(report_path, report, indent=2, ensure_ascii=False)
    log.info("deployment parity (repeat penalty %.2f): llama.cpp pass %.0f%% (EOS %.0f%%, leaks %d, degenerate %.0f%%), "
             "PyTorch pass %.0f%% (degenerate %.0f%%), agreement %.0f%%", penalty, 100 * llama["pass_rate"], 100 * llama["eos_share"],
             llama["leaks"], 100 * llama["degenerate_share"], 100 * torch_["pass_rate"], 100 * torch_["degenerate_share"],
             100 * report["verdict_agreement"])
    if not report["passed"]:
        raise ExportError(f"llama.cpp diverges from the PyTorch model: {'; '.join(report['problems'])}; figures in {report_path}")
    return report
