"""CPU decode speed: the exported GGUF through llama-cpp-python versus HF `generate`, same prompts.

Both decode greedily the same number of new tokens (EOS ignored, so the counts are equal) from
the same chat-rendered prompts, one prompt at a time, on the same threads; the figure is the
ratio of tokens/s within this one run.

    python benchmarks/decode_speed.py --export RUN_DIR/export [--gguf-type q8_0]
    python benchmarks/decode_speed.py            # no export given: the built-in base, converted here

llama-cpp-python is the optional ``llamacpp`` extra (it compiles llama.cpp from source):
    pip install 'medtune[llamacpp]'
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = [
    "What are common symptoms of the flu?",
    "How can I lower my blood pressure without medicine?",
    "What does a high cholesterol result mean?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", type=Path, help="an export directory (merged/ and gguf/)")
    ap.add_argument("--gguf-type", default="q8_0")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    if importlib.util.find_spec("llama_cpp") is None:
        sys.exit("llama_cpp is not installed: this benchmark needs the optional extra `pip install 'medtune[llamacpp]'` "
                 "(llama-cpp-python compiles llama.cpp from source, several minutes on a small CPU)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medtune.export.gguf import to_gguf
    from medtune.export.llamacpp import open_gguf

    torch.set_num_threads(args.threads)
    if args.export:
        hf_dir, gguf = args.export / "merged", args.export / "gguf" / f"model-{args.gguf_type}.gguf"
    else:
        from medtune.core.models import resolve

        hf_dir = Path(resolve("smollm2-135m-instruct").path)
        gguf = Path(to_gguf(hf_dir, Path(tempfile.mkdtemp()), [args.gguf_type])[args.gguf_type])
    tok = AutoTokenizer.from_pretrained(hf_dir)
    prompts = [
        tok(
            tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True), add_special_tokens=False
        )["input_ids"]
        for p in PROMPTS
    ]
    n = args.new_tokens

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    with torch.inference_mode():  # warm-up
        model.generate(torch.tensor([prompts[0]]), max_new_tokens=4, do_sample=False)
    hf_tokens, hf_seconds = 0, 0.0
    for p in prompts:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([p]), max_new_tokens=n, min_new_tokens=n, do_sample=False, temperature=None, top_p=None, top_k=None
            )
        hf_seconds += time.perf_counter() - start
        hf_tokens += out.shape[1] - len(p)
    del model

    llm = open_gguf(gguf, n_ctx=1024, n_threads=args.threads, n_batch=256)
    llm.eval(prompts[0][:8])  # warm-up
    cpp_tokens, cpp_seconds = 0, 0.0
    for p in prompts:
        llm.reset()
        start = time.perf_counter()
        got = 0
        for _ in llm.generate(p, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            got += 1
            if got >= n:
                break
        cpp_seconds += time.perf_counter() - start
        cpp_tokens += got

    hf_rate, cpp_rate = hf_tokens / hf_seconds, cpp_tokens / cpp_seconds
    print(f"prompts {len(prompts)}, {n} new tokens each, {args.threads} threads")
    print(f"HF generate (float32, {hf_dir.name}): {hf_tokens} tokens in {hf_seconds:.2f}s = {hf_rate:.1f} tok/s")
    print(f"llama.cpp ({gguf.name}): {cpp_tokens} tokens in {cpp_seconds:.2f}s = {cpp_rate:.1f} tok/s")
    print(f"ratio llama.cpp / HF: {cpp_rate / hf_rate:.2f}x (goal >= 5x)")


if __name__ == "__main__":
    main()
