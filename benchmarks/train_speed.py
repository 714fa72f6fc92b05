"""Training throughput: medtune's batching against a naive TRL baseline, in one run.

    python benchmarks/train_speed.py                 # built-in starter set + GenMedGPT-5k sample when present
    python benchmarks/train_speed.py --steps 8 --rss # more steps; also peak RSS of LoRA fp32 vs QLoRA
    python benchmarks/train_speed.py --profile       # top operators of one packed step (torch.profiler)

Run it on an otherwise idle machine (sequential, the default). ``--parallel`` runs every setup at
once, one thread each, for a machine that is busy anyway.

Every setup trains the same model (built-in SmolLM2-135M, fp32 LoRA, the same LoRA config) on the
same dialogue mix with TRL's SFTTrainer for a few optimizer steps; the first step is warm-up and not
timed. "Real tokens" are the non-padding tokens the model read: the trainer's own ``num_tokens``
counter (attention-mask sum, or the flat row length when padding-free). Setups:

- naive: plain TRL, every batch padded to max_length, no packing, random order (what a first
  script does: ``pad_to_multiple_of=max_length``);
- dynamic padding: pad to the longest example of the batch (TRL's default collator);
- + group_by_length: similar lengths batched together (``train_sampling_strategy``);
- medtune packing: ``train.packing`` — best-fit-decreasing packing into rows of max_length,
  padding-free batches with per-example position_ids (attention stays inside each example).

Model FLOP utilisation (MFU) = useful model FLOPs per second / a fp32 matmul peak timed in this
run; useful FLOPs count real tokens only: 2·P per token forward (all weights, LM head included) plus
2·P_bwd per token for the input-gradient backward through the adapted layers and the head (the
frozen base has no weight gradients; attention score FLOPs are left out, small at these lengths).
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
CHATDOCTOR = Path(os.environ.get("MEDTUNE_SHARED_DATA", REPO.parent / "shared" / "data")) / "genmedgpt" / "chatdoctor5k.json"


def base_overrides(tmp: str, args) -> list[str]:
    sources = "[{kind: builtin, path: starter}"
    if CHATDOCTOR.exists():
        sources += f", {{kind: chatdoctor, path: {CHATDOCTOR}, count: {args.chatdoctor}}}"
    return [
        f"output_dir={tmp}", f"data.sources={sources}]", "data.near_dedupe=false", "data.eval_fraction=0",
        "model.quantization=none", "lora.dropout=0", f"lora.layers={list(range(18, 30))}",
        f"train.max_seq_length={args.max_length}", f"train.batch_size={args.batch}", "train.report_to=[]",
        f"train.max_steps={args.steps}", "train.logging_steps=1", "train.lr_scheduler=constant",
    ]


SETUPS = {
    "naive (pad to max_length)": {"packing": False, "group_by_length": False, "pad_to_max": True},
    "dynamic padding": {"packing": False, "group_by_length": False, "pad_to_max": False},
    "+ group_by_length": {"packing": False, "group_by_length": True, "pad_to_max": False},
    "medtune packing (padding-free)": {"packing": True, "group_by_length": False, "pad_to_max": False},
    "naive, TRL defaults (bf16, ckpt)": {
        "packing": False,
        "group_by_length": False,
        "pad_to_max": True,
        "bf16": True,
        "checkpointing": True,
    },
    "medtune packing + bf16 autocast": {"packing": True, "group_by_length": False, "pad_to_max": False, "bf16": True},
}
"""Setups 5-6 run under bf16 autocast (float32 weights). 5 is what a script gets from TRL's own
``SFTConfig`` defaults (``bf16=True``, ``gradient_checkpointing=True``) with padding to max_length; 6
is medtune's packing under autocast, the question being whether bf16 pays for training on this CPU
(it does for MCQ scoring, a forward pass only). medtune trains a float32 model in float32 on a CPU."""


def measure(name: str, setup: dict, records, args, tmp: str) -> dict:
    """Train ``args.steps`` steps; real tokens/s over steps 2..N from the trainer's token counter."""
    import torch
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from medtune.core.config import load_config
    from medtune.core.models import load_base
    from medtune.core.rundir import RunDir
    from medtune.training.train import examples_dataset, peft_config, sft_config

    batch = args.packed_batch if setup["packing"] else args.batch
    cfg = load_config(
        None,
        base_overrides(tmp, args)
        + [
            f"name=setup{list(SETUPS).index(name) + 1}",
            f"train.packing={setup['packing']}",
            f"train.group_by_length={setup['group_by_length']}",
            f"train.batch_size={batch}",
        ],
    )
    sft_args = sft_config(cfg, RunDir.create(cfg), False)
    if setup["pad_to_max"]:
        sft_args.pad_to_multiple_of = cfg.train.max_seq_length
    sft_args.bf16 = setup.get("bf16", False)
    sft_args.gradient_checkpointing = setup.get("checkpointing", False)
    torch.manual_seed(0)
    _, tok, model = load_base(cfg.model)
    marks: list[tuple[float, float, float]] = []

    class Clock(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs:
                marks.append((time.perf_counter(), time.process_time(), float(logs["num_tokens"])))

    trainer = SFTTrainer(
        model=model,
        args=sft_args,
        train_dataset=examples_dataset(records, cfg.data.template, cfg.data.system_prompt),
        processing_class=tok,
        peft_config=peft_config(cfg, model),
        callbacks=[Clock()],
    )
    trainer.train()
    (t0, c0, n0), (t1, c1, n1) = marks[0], marks[-1]
    return {
        "setup": name,
        "batch": batch,
        "steps_timed": len(marks) - 1,
        "real_tokens": n1 - n0,
        "seconds": t1 - t0,
        "cpu_seconds": c1 - c0,
        "tokens_per_s": (n1 - n0) / (t1 - t0),
        "tokens_per_cpu_s": (n1 - n0) / (c1 - c0),
        "flops_per_token": flops_per_token(model, min(cfg.lora.layers or [0])),
    }


def flops_per_token(model, lowest_layer: int) -> float:
    """2·P forward over every weight + 2·P_bwd input-gradient backward over the adapted layers and the head."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n_layers = base.config.num_hidden_layers
    layer_params = sum(p.numel() for p in base.model.layers[0].parameters())
    head = base.lm_head.weight.numel()
    forward = 2 * (n_layers * layer_params + head)
    backward = 2 * ((n_layers - lowest_layer) * layer_params + head)
    return forward + backward


def matmul_peak(n: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """fp32 matmul FLOPs per wall second and per CPU second (this process's threads), best of a few."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    wall = cpu = float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return 2 * n**3 / wall, 2 * n**3 / cpu


def rss_child(kind: str, args) -> None:
    """Runs in a subprocess: a few medtune training steps; prints the process's peak RSS."""
    from medtune.core.config import load_config
    from medtune.core.rundir import RunDir
    from medtune.data import prepare as data_prepare
    from medtune.training.train import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            None,
            base_overrides(tmp, args)
            + [
                f"name={kind}",
                f"model.quantization={'4bit' if kind == 'qlora' else 'none'}",
                "train.max_steps=2",
                "train.packing=true",
                f"train.batch_size={args.packed_batch}",
            ],
        )
        run = RunDir.create(cfg)
        data_prepare.write(data_prepare.prepare(cfg.data), run.data)
        train(cfg, run)
    print(json.dumps({"kind": kind, "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_rss(args) -> dict[str, float]:
    out = {}
    for kind in ("lora", "qlora"):
        cmd = [
            sys.executable,
            __file__,
            "--rss-child",
            kind,
            "--max-length",
            str(args.max_length),
            "--packed-batch",
            str(args.packed_batch),
            "--chatdoctor",
            str(args.chatdoctor),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])["max_rss_mib"]
    return out


def profile_packed_step(records, args, tmp: str) -> None:
    """torch.profiler over one packed training step: where the time goes."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    state = {}

    class Prof(TrainerCallback):
        def on_step_begin(self, a, s, c, **kw):
            if s.global_step == 1:
                state["p"] = profile(activities=[ProfilerActivity.CPU], record_shapes=False)
                state["p"].__enter__()

        def on_step_end(self, a, s, c, **kw):
            if "p" in state and s.global_step == 2:
                state["p"].__exit__(None, None, None)

    from trl import SFTTrainer

    from medtune.core.config import load_config
    from medtune.core.models import load_base
    from medtune.core.rundir import RunDir
    from medtune.training.train import examples_dataset, peft_config, sft_config

    cfg = load_config(
        None,
        base_overrides(tmp, args) + ["name=profile", "train.packing=true", "train.max_steps=2", f"train.batch_size={args.packed_batch}"],
    )
    _, tok, model = load_base(cfg.model)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(cfg, RunDir.create(cfg), False),
        train_dataset=examples_dataset(records, cfg.data.template, cfg.data.system_prompt),
        processing_class=tok,
        peft_config=peft_config(cfg, model),
        callbacks=[Prof()],
    )
    trainer.train()
    print(state["p"].key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def run_parallel(numbers, args) -> list[dict]:
    """One subprocess per setup, started together: a shared machine's load hits them alike."""
    procs = []
    for i in numbers:
        cmd = [
            sys.executable,
            __file__,
            "--json",
            "--setups",
            str(i),
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--packed-batch",
            str(args.packed_batch),
            "--max-length",
            str(args.max_length),
            "--chatdoctor",
            str(args.chatdoctor),
        ]
        # one thread each: oversubscribed OpenMP threads spin, and the spinning counts as CPU time
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env))
    rows = []
    for proc in procs:
        out, _ = proc.communicate()
        line = [ln for ln in out.splitlines() if ln.startswith("JSON ")]
        if proc.returncode or not line:
            raise SystemExit(f"a setup subprocess failed (exit {proc.returncode})")
        rows += json.loads(line[-1][5:])
    return rows


def main() -> None:
    if "--medquad" in sys.argv:  # the realistic setup (MedQuAD, 384 tokens, batch 8, all layers): its own script
        sys.path.insert(0, str(Path(__file__).parent))
        from train_speed_medquad import main as medquad_main

        return medquad_main([a for a in sys.argv[1:] if a != "--medquad"])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps per setup (the first is warm-up)")
    ap.add_argument("--batch", type=int, default=4, help="examples per batch for the unpacked setups")
    ap.add_argument("--packed-batch", type=int, default=1, help="packed rows per batch (each holds max_length tokens)")
    ap.add_argument("--max-length", type=int, default=512, help="max_length (medtune's default train.max_seq_length)")
    ap.add_argument("--chatdoctor", type=int, default=300, help="GenMedGPT-5k dialogues in the mix (when the data is present)")
    ap.add_argument("--setups", default="all", help="comma-separated setup numbers (1-6) or 'all'")
    ap.add_argument("--rss", action="store_true", help="also measure peak RSS of LoRA fp32 vs QLoRA (two subprocesses)")
    ap.add_argument("--profile", action="store_true", help="profile one packed step instead of the comparison")
    ap.add_argument("--rss-child", choices=["lora", "qlora"], help=argparse.SUPPRESS)
    ap.add_argument("--only-rss", action="store_true", help="only the peak RSS comparison")
    ap.add_argument(
        "--parallel", action="store_true", help="run the setups at the same time, one subprocess each, so they share the same machine load"
    )
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return rss_child(args.rss_child, args)
    if args.only_rss:
        rss = peak_rss(args)
        print(
            f"peak RSS of a medtune training process (packed, max_length {args.max_length}): "
            f"LoRA fp32 {rss['lora']:.0f} MiB, QLoRA 4-bit {rss['qlora']:.0f} MiB ({rss['qlora'] / rss['lora']:.2f}x)"
        )
        return

    import torch

    from medtune.core.config import load_config
    from medtune.data import prepare as data_prepare

    with tempfile.TemporaryDirectory() as tmp:
        records = data_prepare.prepare(load_config(None, base_overrides(tmp, args)).data).train
        if args.profile:
            return profile_packed_step(records, args, tmp)
        peak = matmul_peak()
        numbers = range(1, len(SETUPS) + 1) if args.setups == "all" else [int(i) for i in args.setups.split(",")]
        if args.parallel:
            rows = run_parallel(numbers, args)
        else:
            rows = [measure(list(SETUPS)[i - 1], SETUPS[list(SETUPS)[i - 1]], records, args, tmp) for i in numbers]
        peak_after = matmul_peak()
        if args.json:
            print("JSON " + json.dumps(rows))
            return
    per_token = rows[0]["flops_per_token"]
    naive = rows[0]
    peak_wall, peak_cpu = max(peak[0], peak_after[0]), max(peak[1], peak_after[1])
    print(
        f"\ndata: {len(records)} dialogues ({'starter + GenMedGPT-5k sample' if CHATDOCTOR.exists() else 'starter set'}), "
        f"max_length {args.max_length}; torch threads {torch.get_num_threads()}; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"fp32 matmul peak (2048^3): {peak_wall / 1e9:.1f} GFLOP/s wall, {peak_cpu / 1e9:.1f} GFLOP per CPU-second; "
        f"useful model FLOPs per real token {per_token / 1e6:.0f} M"
    )
    print(
        "tok/s = real tokens per wall second; tok/CPU-s = per second of this process's CPU time (stable when other\n"
        "processes share the machine); the ratio and MFU use CPU time: MFU = tok/CPU-s x FLOPs/token / matmul FLOP per CPU-s"
    )
    header = (
        f"{'setup':32} {'batch':>5} {'steps':>5} {'real tok':>9} {'wall s':>7} {'tok/s':>7} {'tok/CPU-s':>9} {'vs naive':>8} {'MFU':>6}"
    )
    print(header + "\n" + "-" * len(header))
    for r in rows:
        mfu = r["tokens_per_cpu_s"] * per_token / peak_cpu
        print(
            f"{r['setup']:32} {r['batch']:>5} {r['steps_timed']:>5} {r['real_tokens']:>9.0f} {r['seconds']:>7.1f} "
            f"{r['tokens_per_s']:>7.1f} {r['tokens_per_cpu_s']:>9.2f} "
            f"{r['tokens_per_cpu_s'] / naive['tokens_per_cpu_s']:>7.2f}x {mfu:>6.1%}"
        )
    if args.rss:
        rss = peak_rss(args)
        print(
            f"\npeak RSS of a medtune training process (packed, max_length {args.max_length}): "
            f"LoRA fp32 {rss['lora']:.0f} MiB, QLoRA 4-bit {rss['qlora']:.0f} MiB ({rss['qlora'] / rss['lora']:.2f}x)"
        )


if __name__ == "__main__":
    main()
