"""Training speed at realistic lengths: MedQuAD rows, max 384 tokens, batch 8, LoRA on all 30 layers.

``python benchmarks/train_speed.py --medquad`` (or this file) trains the built-in SmolLM2-135M as
``medtune train`` does (``sft_config``, the medtune trainer, adapters kept fp32, medtune's default
LoRA r=16/alpha 32/dropout 0.05 on every linear layer of every decoder layer) on MedQuAD
(``../shared/data/medquad``), one subprocess per setup so each has its own peak RSS; the setups run
one after another, in rounds (A, B, C, A, B, C, ...), so a shared machine's load hits them alike:

| setup | what |
|---|---|
| plain TRL head | ``train.loss=plain``: TRL's fused head; on a CPU it scores every position (prompt, padding) |
| chunked head | ``train.loss=chunked`` (medtune's default): completion positions only, 512-row chunks, no entropy |
| chunked + passive OpenMP | the same with ``OMP_WAIT_POLICY=PASSIVE``, as the ``medtune`` CLI runs (see docs/training-speed.md) |
| chunked + passive + ckpt | the same with ``train.gradient_checkpointing=true`` (activations recomputed in the backward pass) |
| passive + dropout 0 | chunked + passive with ``lora.dropout: 0``: PEFT then skips the dropped copy of every adapted layer's input |
| dropout 0 + 4x2, 2x4, 1x8 | the same in micro-batches of 4, 2 or 1 with ``train.grad_accum`` 2, 4 or 8 (8 rows a step) |
| dropout 0 + 2x4 + ckpt | the same with gradient checkpointing |

Reported per setup: real (non-padding) tokens per wall second and per CPU second of the process,
MFU, peak RSS, and each as a ratio to the plain TRL head. MFU = useful model FLOPs per CPU second /
the matmul peak per CPU second, timed in this script with ``torch.matmul`` in the training dtype
(float32 on a CPU; the bfloat16 peak is printed beside it when the CPU flags show AVX512_BF16 or
AMX_BF16). Useful FLOPs: per real token 4·P_layers (forward + input-gradient backward through the 30
adapted layers; the frozen weights get no gradient), per completion token 4·P_head (LM head forward +
backward); attention scores, LoRA and padding positions are not counted, so both paths are measured
against the same work.

``--profile SETUP`` prints torch.profiler tables (time, memory) of one step after a warm-up step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
MEDQUAD = Path(os.environ.get("MEDTUNE_SHARED_DATA", REPO.parent / "shared" / "data")) / "medquad"

PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}
SETUPS = {
    "plain TRL head": (["train.loss=plain"], {}),
    "chunked head": (["train.loss=chunked"], {}),
    "chunked + passive OpenMP": (["train.loss=chunked"], PASSIVE),
    "chunked + passive + ckpt": (["train.loss=chunked", "train.gradient_checkpointing=true"], PASSIVE),
    "passive + dropout 0": (["train.loss=chunked", "lora.dropout=0"], PASSIVE),
    "dropout 0 + 4x2": (["train.loss=chunked", "lora.dropout=0", "train.batch_size=4", "train.grad_accum=2"], PASSIVE),
    "dropout 0 + 2x4": (["train.loss=chunked", "lora.dropout=0", "train.batch_size=2", "train.grad_accum=4"], PASSIVE),
    "dropout 0 + 1x8": (["train.loss=chunked", "lora.dropout=0", "train.batch_size=1", "train.grad_accum=8"], PASSIVE),
    "dropout 0 + 2x4 + ckpt": (["train.loss=chunked", "lora.dropout=0", "train.batch_size=2", "train.grad_accum=4",
                                       "train.gradient_checkpointing=true"], PASSIVE),
}
"""Setting overrides and environment of each setup. 'passive OpenMP' is what the ``medtune`` CLI sets
(``OMP_WAIT_POLICY=PASSIVE`` unless already set): idle OpenMP threads sleep instead of spinning."""


def overrides(tmp: str, args) -> list[str]:
    return [
        f"output_dir={tmp}", "name=medquad", f"data.sources=[{{kind: medquad, path: {MEDQUAD}, count: {args.records}}}]",
        "data.near_dedupe=false", "data.eval_fraction=0", f"model.quantization={args.quantization}", "lora.layers=null",
        f"train.max_seq_length={args.max_length}", f"train.batch_size={args.batch}", f"train.max_steps={args.steps}",
        "train.report_to=[]", "train.logging_steps=1", "train.lr_scheduler=constant",
    ]


def child(setup: str, args) -> dict:
    """One setup in this process: ``args.steps`` optimizer steps, the first one untimed (warm-up)."""
    import torch
    import trl
    from transformers import TrainerCallback

    from medtune.core.config import load_config
    from medtune.core.models import load_base
    from medtune.core.rundir import RunDir
    from medtune.data.records import read_jsonl
    from medtune.training.checkpoints import trainer_class
    from medtune.training.train import examples_dataset, keep_adapter_fp32, peft_config, sft_config

    cfg = load_config(None, overrides(args.tmp, args) + SETUPS[setup][0])
    records = read_jsonl(Path(args.tmp) / "train.jsonl")
    torch.manual_seed(0)
    _, tok, model = load_base(cfg.model)
    steps: list[tuple[float, float]] = []
    labelled: list[int] = []
    real: list[int] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.start = (time.perf_counter(), time.process_time())

        def on_step_end(self, a, state, control, **kw):
            steps.append((time.perf_counter() - self.start[0], time.process_time() - self.start[1]))

    cls = trainer_class(trl.SFTTrainer, chunked_head=cfg.train.loss == "chunked")  # as ``medtune train`` builds it
    trainer = cls(model=model, args=sft_config(cfg, RunDir.create(cfg), False), processing_class=tok,
                  train_dataset=examples_dataset(records, cfg.data.template, cfg.data.system_prompt),
                  peft_config=peft_config(cfg, model), callbacks=[Clock()])
    keep_adapter_fp32(trainer.model)
    collate = trainer.data_collator

    def counting_collator(rows):  # batches are collated in step order (one may be fetched ahead)
        batch = collate(rows)
        labelled.append(int((batch["labels"][:, 1:] != -100).sum()))
        real.append(int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel())
        return batch

    trainer.data_collator = counting_collator
    if args.profile:
        return profile_step(trainer)
    trainer.train()
    timed = range(1, len(steps))
    g = cfg.train.grad_accum  # micro-batches per optimizer step, collated in order
    real, labelled = ([sum(x[i * g:(i + 1) * g]) for i in range(len(steps))] for x in (real, labelled))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "setup": setup, "steps_timed": len(timed), "real_tokens": sum(real[i] for i in timed),
        "label_tokens": sum(labelled[i] for i in timed), "positions": args.batch * args.max_length * len(timed),
        "seconds": sum(steps[i][0] for i in timed), "cpu_seconds": sum(steps[i][1] for i in timed),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "losses": losses,
        "flops": flops(trainer.model), "threads": torch.get_num_threads(),
    }


def flops(model) -> dict:
    """FLOPs per real token through the decoder layers and per completion token through the LM head."""
    base = model.get_base_model()
    layers = sum(p.numel() for n, p in base.model.layers.named_parameters() if "lora_" not in n)
    if any(type(m).__name__ == "Linear4bit" for m in base.modules()):  # packed 4-bit storage: count the real shapes
        layers = sum(m.in_features * m.out_features for m in base.model.layers.modules() if hasattr(m, "in_features")
                     and "lora" not in type(m).__module__)
    return {"per_token": 4 * layers, "per_label": 4 * base.lm_head.weight.numel()}


def profile_step(trainer) -> dict:
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    state = {}

    class Prof(TrainerCallback):
        def on_step_begin(self, a, s, c, **kw):
            if s.global_step == 1:
                state["p"] = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
                state["p"].__enter__()

        def on_step_end(self, a, s, c, **kw):
            if "p" in state and s.global_step == 2:
                state["p"].__exit__(None, None, None)

    trainer.add_callback(Prof())
    trainer.args.max_steps = 2
    trainer.train()
    averages = state["p"].key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=20))
    print(averages.table(sort_by="self_cpu_memory_usage", row_limit=10))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return {}


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def matmul_peak(dtype_name: str, n: int = 2048, repeats: int = 5) -> float:
    """Matmul FLOPs per CPU second of this process in ``dtype``, best of a few."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        c = time.process_time()
        torch.matmul(a, b)
        best = min(best, time.process_time() - c)
    return 2 * n**3 / best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per setup and round (the first is warm-up)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds over the setups (A, B, C, A, B, C, ...)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--records", type=int, default=400, help="MedQuAD pairs sampled (seeded)")
    ap.add_argument("--quantization", default="none", choices=["none", "4bit"], help="'none' = LoRA, '4bit' = QLoRA")
    ap.add_argument("--setups", default=",".join(SETUPS), help="comma-separated setup names (the first is the baseline)")
    ap.add_argument("--profile", metavar="SETUP", help="torch.profiler tables of one step of this setup")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("JSON " + json.dumps(child(args.child, args)))
        return
    if not MEDQUAD.is_dir():
        raise SystemExit(f"MedQuAD not found at {MEDQUAD} (set MEDTUNE_SHARED_DATA)")
    import torch

    from medtune.core.config import load_config
    from medtune.data import prepare as data_prepare
    from medtune.data.records import write_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        write_jsonl(Path(tmp) / "train.jsonl", data_prepare.prepare(load_config(None, overrides(tmp, args)).data).train)
        if args.profile:
            args.child = args.profile
            return child(args.profile, args) and None
        flags = cpu_flags()
        bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
        peaks = {"float32": matmul_peak("float32")}
        if bf16:
            peaks["bfloat16"] = matmul_peak("bfloat16")
        rows = []
        names = args.setups.split(",")
        for _ in range(args.rounds):
            for name in names:
                cmd = [sys.executable, __file__, "--child", name, "--tmp", tmp, "--steps", str(args.steps), "--batch",
                       str(args.batch), "--max-length", str(args.max_length), "--records", str(args.records),
                       "--quantization", args.quantization]
                out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **SETUPS[name][1]})
                line = [ln for ln in out.stdout.splitlines() if ln.startswith("JSON ")]
                if out.returncode or not line:
                    raise SystemExit(f"setup {name!r} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
                rows.append(json.loads(line[-1][5:]))
                print("JSON " + json.dumps(rows[-1]), flush=True)
        peaks["float32"] = max(peaks["float32"], matmul_peak("float32"))
    report(rows, peaks, bf16, flags, args, torch.get_num_threads())


def report(rows: list[dict], peaks: dict, bf16: bool, flags: set[str], args, threads: int) -> None:
    total: dict[str, dict] = {}
    for r in rows:  # sum the rounds of each setup
        t = total.setdefault(r["setup"], {**r, "real_tokens": 0, "label_tokens": 0, "positions": 0, "seconds": 0.0,
                                          "cpu_seconds": 0.0, "steps_timed": 0, "max_rss_mib": 0.0})
        for key in ("real_tokens", "label_tokens", "positions", "seconds", "cpu_seconds", "steps_timed"):
            t[key] += r[key]
        t["max_rss_mib"] = max(t["max_rss_mib"], r["max_rss_mib"])
    peak = peaks["float32"]
    print(f"\nMedQuAD, max_length {args.max_length}, batch {args.batch}, LoRA on all layers ({args.quantization}); "
          f"{os.cpu_count()} CPUs, torch threads {threads}, load average {os.getloadavg()[0]:.1f}")
    print(f"matmul peak per CPU-second: float32 {peak / 1e9:.1f} GFLOP"
          + (f", bfloat16 {peaks['bfloat16'] / 1e9:.1f} GFLOP" if bf16 else "")
          + f" (bf16 in CPU flags: {', '.join(sorted(flags & {'avx512_bf16', 'amx_bf16'})) or 'none'})")
    header = (f"{'setup':26} {'steps':>5} {'real tok':>8} {'label':>6} {'wall s':>7} {'CPU s':>7} {'tok/s':>6} {'tok/CPU-s':>9} "
              f"{'MFU':>6} {'peak RSS':>9} {'speed x':>7} {'RSS x':>6}")
    print(header + "\n" + "-" * len(header))
    base = next(iter(total.values()))
    for t in total.values():
        f = t["flops"]
        useful = t["real_tokens"] * f["per_token"] + t["label_tokens"] * f["per_label"]
        t["tok_cpu"] = t["real_tokens"] / t["cpu_seconds"]
        mfu = useful / t["cpu_seconds"] / peak
        print(f"{t['setup']:26} {t['steps_timed']:>5} {t['real_tokens']:>8} {t['label_tokens']:>6} {t['seconds']:>7.1f} "
              f"{t['cpu_seconds']:>7.1f} {t['real_tokens'] / t['seconds']:>6.1f} {t['tok_cpu']:>9.1f} {mfu:>6.1%} "
              f"{t['max_rss_mib']:>5.0f} MiB {t['tok_cpu'] / base['real_tokens'] * base['cpu_seconds']:>6.2f}x "
              f"{t['max_rss_mib'] / base['max_rss_mib']:>5.2f}x")
    print("\nloss per step (first round): " + "; ".join(
        f"{r['setup']}: {', '.join(f'{x:.4f}' for x in r['losses'])}" for r in rows[: len(total)]))


if __name__ == "__main__":
    main()
