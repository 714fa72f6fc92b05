#!/usr/bin/env bash
# GPU readiness: the GPU paths of medtune in one go, with the built-in model only, in minutes.
#
#   benchmarks/gpu_check.sh [--out DIR] [--quick] [--cpu]
#
# Steps (each timed, each pass/fail; one table at the end; exit 0 only when all pass):
#   1. train   QLoRA (4-bit NF4, double quantization) with bf16 compute: `medtune run configs/quickstart.yaml`
#              with a few steps; passes when the run ends, the adapter is there and the manifest has the steps
#   2. mcq     medtune's MCQ scorer against lm-evaluation-harness on the GPU (benchmarks/mcq_vs_lmeval.py);
#              passes when >= 95% of medtune's float32 answers equal lm-eval's
#   3. gguf    `medtune export RUN --format gguf` (merge, convert, every GGUF checked against the merged model)
#   4. serve   benchmarks/serve_load.py against the trained run: passes with no 5xx and no lost request
#
# Without a CUDA GPU it says so and exits 2 before doing anything. `--cpu` runs the same steps on the
# CPU instead (float32 compute, not bf16: it checks the script and the plumbing, not the GPU).
# `--quick` shrinks every step (2 training steps, 8 MCQ items, 4 clients), e.g. for --cpu.
# MCQ items: ../shared/data/mcq/medqa.test.jsonl when present (MEDTUNE_SHARED_DATA), else the test fixture.
# Logs of each step: OUT/logs/<step>.log (default OUT: runs/gpu_check).
set -u -o pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
OUT=runs/gpu_check CPU=0 QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift ;;
    --cpu) CPU=1 ;;
    --quick) QUICK=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

PROBE='import torch
ok = torch.cuda.is_available()
print(f"{torch.cuda.get_device_name(0)} (bf16 {torch.cuda.is_bf16_supported()})" if ok else f"none (torch {torch.__version__}, CUDA build {torch.version.cuda})")'
GPU=$("$PY" -c "$PROBE" 2>/dev/null) || { echo "gpu_check: cannot import torch with $PY" >&2; exit 2; }
if [[ $GPU == none* ]]; then
  if [ "$CPU" = 0 ]; then
    echo "gpu_check: no CUDA GPU visible to torch: $GPU. Nothing was checked." >&2
    echo "gpu_check: run this on a machine with a CUDA GPU, or pass --cpu to run the same steps on the CPU." >&2
    exit 2
  fi
  DEVICE=cpu DTYPE=float32
else
  DEVICE=cuda DTYPE=bfloat16
fi
if [ "$QUICK" = 1 ]; then STEPS=2 SAMPLES=2 LIMIT=8 CLIENTS=4 REQUESTS=1
else STEPS=20 SAMPLES=16 LIMIT=100 CLIENTS=32 REQUESTS=2; fi
DATA=${MEDTUNE_SHARED_DATA:-../shared/data}
MCQ=$DATA/mcq/medqa.test.jsonl
[ -f "$MCQ" ] || { MCQ=tests/fixtures/mcq_small.jsonl; LIMIT=4; }
RUN=$OUT/gpu_check
mkdir -p "$OUT/logs"
echo "gpu_check: device $DEVICE ($GPU), compute dtype $DTYPE, output $OUT"

ROWS=()
FAILED=0
step() {  # step NAME DETAIL_FUNCTION COMMAND...: run, time, judge, remember one table row
  local name=$1 judge=$2; shift 2
  local log=$OUT/logs/$name.log start end rc detail
  echo "gpu_check: $name ... (log: $log)"
  start=$(date +%s.%N)
  "$@" >"$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  if [ $rc -eq 0 ] && detail=$($judge "$log"); then
    ROWS+=("$(printf '%-6s | %-4s | %7.1f | %s' "$name" pass "$(awk "BEGIN{print $end - $start}")" "$detail")")
  else
    [ $rc -ne 0 ] && detail="exit $rc: $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-150)"
    ROWS+=("$(printf '%-6s | %-4s | %7.1f | %s' "$name" FAIL "$(awk "BEGIN{print $end - $start}")" "$detail")")
    FAILED=1
  fi
}

judge_train() {
  "$PY" - "$RUN" "$STEPS" <<'EOF'
import json, sys
from pathlib import Path
run, steps = Path(sys.argv[1]), int(sys.argv[2])
m = json.loads((run / "manifest.json").read_text())
cfg = (run / "config.yaml").read_text()
ok = (run / "adapter" / "adapter_model.safetensors").is_file() and m["train"]["steps"] == steps
print(f"{m['train']['steps']} steps in {m['train']['seconds']:.1f}s, train loss {m['train']['train_loss']:.3f}, "
      f"quantization {'4bit' if 'quantization: 4bit' in cfg else '?'}")
sys.exit(0 if ok else 1)
EOF
}

judge_mcq() {
  local line same n
  line=$(grep -o 'medtune float32 [0-9]*/[0-9]*' "$1") || { echo "no agreement line in the output"; return 1; }
  same=${line#medtune float32 }; n=${same#*/}; same=${same%/*}
  echo "float32 answers equal to lm-eval: $same/$n; $(grep -o 'medtune default [0-9.]*x faster than lm-eval' "$1")"
  [ $((same * 100)) -ge $((n * 95)) ]
}

judge_gguf() {
  "$PY" - "$RUN/export/gguf/verify.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("; ".join(f"{t}: agreement {e['token_agreement']:.3f}, ppl change {e['perplexity_change']:+.4f}" for t, e in r["gguf"].items()))
sys.exit(0 if r["passed"] else 1)
EOF
}

judge_serve() {
  local line
  line=$(grep -o 'other 5xx: [0-9]*   lost: [0-9]*' "$1") || { echo "no 5xx/lost line in the output"; return 1; }
  echo "$line; $(grep -m1 -o 'status counts: .*' "$1")"
  [[ $line == "other 5xx: 0   lost: 0" ]]
}

step train judge_train "$PY" -m medtune run configs/quickstart.yaml --set name=gpu_check --set "output_dir=$OUT" \
  --set model.quantization=4bit --set "model.dtype=$DTYPE" --set "train.max_steps=$STEPS" --set train.report_to=[] \
  --set "eval.max_samples=$SAMPLES"
step mcq judge_mcq "$PY" benchmarks/mcq_vs_lmeval.py --file "$MCQ" --kind medqa --limit "$LIMIT" --device "$DEVICE"
if [ -f "$RUN/adapter/adapter_config.json" ]; then
  step gguf judge_gguf "$PY" -m medtune export "$RUN" --format gguf
  step serve judge_serve "$PY" benchmarks/serve_load.py --model "$RUN" --clients "$CLIENTS" --requests "$REQUESTS" --deadline 300
else
  ROWS+=("$(printf '%-6s | %-4s | %7s | %s' gguf FAIL - "no trained run (train failed)")")
  ROWS+=("$(printf '%-6s | %-4s | %7s | %s' serve FAIL - "no trained run (train failed)")")
  FAILED=1
fi

echo
echo "gpu_check on $DEVICE: $GPU ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
printf '%-6s | %-4s | %7s | %s\n' step "" seconds detail
printf '%s\n' "-------+------+---------+-------------------------------------------"
printf '%s\n' "${ROWS[@]}"
exit $FAILED
