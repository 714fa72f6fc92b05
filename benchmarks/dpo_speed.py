"""DPO training speed: TRL's LM head against medtune's chunked head (``train.loss``), in one run.

Each setup is one ``medtune train`` subprocess on the same config: the built-in SmolLM2-135M, fp32 LoRA r=16 on
the top 12 layers, dropout 0, ``train.method: dpo`` on the built-in ``safety_pairs``, 4 pairs per optimizer step
one per pass, 256 tokens. Printed per setup: the trainer's ``train_runtime`` (the first step included), the
process's peak RSS, the logged losses (they must be the same), and the ratios to the first setup.

Usage: python benchmarks/dpo_speed.py [--steps 7]
Run it on an otherwise idle machine; the setups run one after another.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = """\
name: dpo_speed
output_dir: {out}
model: {{name: smollm2-135m-instruct, quantization: none}}
lora: {{r: 16, alpha: 32, dropout: 0, layers: [18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29]}}
data:
  sources: [{{kind: builtin, path: safety_pairs}}]
  eval_fraction: 0
train: {{method: dpo, max_steps: {steps}, batch_size: 1, grad_accum: 4, learning_rate: 5.0e-5, dpo_beta: 0.1,
        max_seq_length: 256, logging_steps: 1, report_to: []}}
"""


CHILD = """\
import atexit, resource, sys
from medtune.apps.cli import main
atexit.register(lambda: print(f"PEAK_RSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr))
sys.argv = ["medtune", *sys.argv[1:]]
main()
"""
"""``medtune`` as the CLI runs it, printing its own peak RSS on exit (each setup in a process of its own)."""


def run(config: Path, loss: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, "train", str(config), "--set", f"train.loss={loss}"],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"train.loss={loss} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    logs = [ast.literal_eval(m) for m in re.findall(r"\{'[^{}]*\}", out.stdout + out.stderr)]
    runtime = next(float(d["train_runtime"]) for d in logs if "train_runtime" in d)
    peak_kb = int(re.findall(r"PEAK_RSS_KB (\d+)", out.stderr)[-1])
    return {"loss": loss, "seconds": runtime, "peak_rss_mib": peak_kb / 1024,
            "losses": [float(d["loss"]) for d in logs if "loss" in d and "train_runtime" not in d]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "dpo.yaml"
        config.write_text(CONFIG.format(out=Path(tmp) / "runs", steps=args.steps))
        rows = []
        for loss in ("plain", "chunked"):
            shutil.rmtree(Path(tmp) / "runs", ignore_errors=True)  # a fresh run directory each time
            rows.append(run(config, loss))
    base = rows[0]
    print(f"DPO, {args.steps} steps of 4 pairs (one per pass), built-in SmolLM2-135M, fp32 LoRA r=16 on the top 12 layers")
    for r in rows:
        print(f"train.loss={r['loss']:8} train_runtime {r['seconds']:7.1f} s  speed {base['seconds'] / r['seconds']:.2f}x  "
              f"peak RSS {r['peak_rss_mib']:6.0f} MiB")
    same = all(abs(a - b) < 1e-3 for a, b in zip(rows[0]["losses"], rows[1]["losses"], strict=True))
    print("losses: " + "; ".join(f"{r['loss']}: " + ", ".join(f"{x:.4f}" for x in r["losses"]) for r in rows)
          + f" ({'the same' if same else 'DIFFERENT'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
