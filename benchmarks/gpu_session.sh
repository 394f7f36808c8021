#!/usr/bin/env bash
# A GPU session's whole job in one command, run from the repository root on the GPU machine:
#
#   bash benchmarks/gpu_session.sh                          # every step, ends inside BUDGET_S (540 s)
#   PEER_DIR=.peer bash benchmarks/gpu_session.sh           # + pointnet2_ops built by hand into .peer/ (put on
#                                                           #   PYTHONPATH; keep .peer/ git-ignored, never commit it)
#   STEPS="env build tests memcheck racecheck" bash benchmarks/gpu_session.sh    # a subset, in this order
#
# Steps (each under `timeout`, logged, the next one runs after a failure; a summary table ends the output):
#   env        nvidia-smi, nvcc, compute-sanitizer, python/torch/triton versions, is pointnet2_ops importable
#   build      crossjepa._C with CUDA for CROSSJEPA_CUDA_ARCH (default 9.0 = sm_90), in place; skipped when the
#              built extension has CUDA and is newer than csrc/ and setup.py (FORCE_BUILD=1 rebuilds)
#   tests      pytest $TESTS (CUDA + Triton tests), then the CUDA tests of test_render.py / test_perf.py
#   memcheck   compute-sanitizer --tool memcheck over benchmarks/sanitize_ops.py (no caching allocator)
#   racecheck  compute-sanitizer --tool racecheck over benchmarks/sanitize_ops.py
#   bench_ops  benchmarks/bench_ops_cuda.py  -> benchmarks/results/ops_cuda_<gpu>.json  (via save_results.py)
#   bench_attn benchmarks/bench_attention.py -> benchmarks/results/attention_<gpu>.json (via save_results.py)
#   bench_cli  crossjepa bench --device cuda -> benchmarks/results/bench_cuda.json
#   profile    crossjepa profile --device cuda --steps 20 -> benchmarks/results/profile_cuda/
#
# BUDGET_S is a deadline for the whole script: each step's limit shrinks to the time left, so the summary and
# the bundle are written before the device tool's 600 s limit (call it with timeout_s=600). Typical H100 run:
# build 1-2 min, every other step under 2 min. Short of time: two calls, STEPS="env build tests memcheck
# racecheck" then STEPS="build bench_ops bench_attn bench_cli profile" (a fresh machine rebuilds).
# When the same command first does other work (building pointnet2_ops into .peer/), lower BUDGET_S by that time.
#
# Into $OUT (at most 8 files come back): summary.txt; results.tar.gz, the files this run wrote under
# benchmarks/results/ (`tar xzf results.tar.gz -C <repo>` puts them in place; the profile trace and memory
# snapshot excluded); logs.tar.gz (every step's log, raw pytest-benchmark JSON, junit XML, env.json); loose
# copies of ops_cuda_<gpu>.json, attention_<gpu>.json, bench_cuda.json, profile_summary.json; and
# profile_trace.json.gz when under 16 MiB.
# Env: PYTHON (python3), OUT (/tmp/gpu_out), BUDGET_S (540), STEPS, PEER_DIR, TESTS, SANITIZER, MAX_JOBS (16),
# CROSSJEPA_CUDA_ARCH (9.0), FORCE_BUILD, CROSSJEPA_BENCH_COMPILE=0 (skip the torch.compile peers).
set -uo pipefail
cd "$(dirname "$0")/.."

export REPO=$PWD PY=${PYTHON:-python3} RESULTS=benchmarks/results
export OUT=${OUT:-/tmp/gpu_out}
export TESTS=${TESTS:-"tests/test_ops_cuda.py tests/test_attention.py tests/test_ops_backend.py"}
export SANITIZER=${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
export PYTHONUNBUFFERED=1
BUDGET_S=${BUDGET_S:-540}
STEPS=${STEPS:-"env build tests memcheck racecheck bench_ops bench_attn bench_cli profile"}
RESERVE_S=25  # kept back for the bundle and the summary
START=$SECONDS

export WORK
WORK=$(mktemp -d /tmp/gpu_session.XXXXXX)
mkdir -p "$OUT" "$WORK/logs" "$RESULTS"
touch "$WORK/start_marker"
PEER_NOTE="no PEER_DIR"
if [ -n "${PEER_DIR:-}" ]; then
  if [ -d "$PEER_DIR" ]; then
    PEER_DIR=$(cd "$PEER_DIR" && pwd)
    PEER_NOTE="PEER_DIR=$PEER_DIR"
  else
    PEER_NOTE="PEER_DIR=$PEER_DIR is not a directory: ignored"
    PEER_DIR=
  fi
fi
export PYTHONPATH="$REPO${PEER_DIR:+:$PEER_DIR}${PYTHONPATH:+:$PYTHONPATH}"
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
TAG=$(echo "$GPU_NAME" | tr '[:upper:]' '[:lower:]' | grep -oE '[a-z][0-9]{2,4}' | head -n 1)
export TAG=${TAG:-gpu}

step_env() {
  local rc=0
  nvidia-smi || rc=1
  nvcc --version | tail -n 2
  "$SANITIZER" --version | head -n 2
  "$PY" -c 'import platform, torch, triton; print("python", platform.python_version(), "| torch", torch.__version__,
  "CUDA", torch.version.cuda, "| triton", triton.__version__, "|", torch.cuda.get_device_name())' || rc=1
  "$PY" -c 'import json; from crossjepa.perf.env import environment; print(json.dumps(environment("cuda")))' \
    >"$WORK/env.json" || rc=1
  if "$PY" -c 'import torch, pointnet2_ops.pointnet2_utils' 2>"$WORK/logs/pointnet2_import.txt"; then
    echo "pointnet2_ops: importable"
  else
    echo "pointnet2_ops: not installed ($(tail -n 1 "$WORK/logs/pointnet2_import.txt"))"
  fi
  return "$rc"
}

step_build() {
  local so
  so=$("$PY" -c 'import crossjepa._C as c; print(c.__file__ if c.with_cuda() else "")' 2>/dev/null)
  if [ "${FORCE_BUILD:-0}" != 1 ] && [ -n "$so" ] && [ -z "$(find csrc setup.py -type f -newer "$so")" ]; then
    echo "$so has CUDA and is newer than csrc/ and setup.py: not rebuilt (FORCE_BUILD=1 rebuilds)"
  else
    CROSSJEPA_CUDA_ARCH=${CROSSJEPA_CUDA_ARCH:-9.0} FORCE_CUDA=1 CROSSJEPA_STRICT_BUILD=1 MAX_JOBS=${MAX_JOBS:-16} \
      "$PY" setup.py build_ext --inplace || return
  fi
  "$PY" -c 'import crossjepa._C as c; from crossjepa import ops; assert c.with_cuda(), "crossjepa._C has no CUDA"
print("backends on cuda:", {op: ops.backend(op, "cuda") for op in ("farthest_point_sample", "knn", "group")})'
}

step_tests() {
  local rc=0 extra
  # shellcheck disable=SC2086  # TESTS is a list of paths
  "$PY" -m pytest $TESTS -q -rs -p no:cacheprovider --junitxml="$WORK/junit_tests.xml" || rc=$?
  "$PY" -m pytest tests/test_render.py tests/test_perf.py -q -rs -k cuda -p no:cacheprovider \
    --junitxml="$WORK/junit_cuda_extra.xml"
  extra=$?
  [ "$extra" -eq 5 ] && extra=0  # 5: no test matched
  [ "$rc" -ne 0 ] && return "$rc"
  return "$extra"
}

sanitize() {  # sanitize TOOL
  "$SANITIZER" --tool "$1" --report-api-errors no --error-exitcode 3 \
    "$PY" benchmarks/sanitize_ops.py --device cuda
}
step_memcheck() { PYTORCH_NO_CUDA_MEMORY_CACHING=1 sanitize memcheck; }
step_racecheck() { sanitize racecheck; }

bench() {  # bench FILE NAME: pytest-benchmark run, then save_results.py -> benchmarks/results/NAME.json
  local rc=0
  "$PY" -m pytest "$1" -q -rs -p no:cacheprovider --benchmark-json="$WORK/$2_run.json" \
    --benchmark-columns=median,min,max,rounds --benchmark-sort=fullname || rc=$?
  if [ ! -f benchmarks/save_results.py ]; then
    echo "benchmarks/save_results.py is missing: raw run kept in logs.tar.gz as $2_run.json"
    return 1
  fi
  [ -f "$WORK/$2_run.json" ] && { "$PY" benchmarks/save_results.py "$WORK/$2_run.json" --name "$2" || rc=$?; }
  return "$rc"
}
step_bench_ops() { bench benchmarks/bench_ops_cuda.py "ops_cuda_$TAG"; }
step_bench_attn() { bench benchmarks/bench_attention.py "attention_$TAG"; }
step_bench_cli() { "$PY" -m crossjepa bench --device cuda --out "$RESULTS"; }
step_profile() { "$PY" -m crossjepa profile --device cuda --steps 20 --out "$RESULTS/profile_cuda"; }
export -f step_env step_build step_tests sanitize step_memcheck step_racecheck bench step_bench_ops \
  step_bench_attn step_bench_cli step_profile

SUMMARY=()
note() { SUMMARY+=("$(printf '%-11s %-9s %5s  %s' "$@")"); }
run_step() {  # run_step NAME MAX_SECONDS
  local name=$1 max=$2 left limit t0 rc status last
  [[ " $STEPS " == *" $name "* ]] || return 0
  left=$((BUDGET_S - RESERVE_S - (SECONDS - START)))
  limit=$((max < left ? max : left))
  if [ "$limit" -lt 15 ]; then
    note "$name" SKIPPED - "out of time (BUDGET_S=$BUDGET_S)"
    return 0
  fi
  echo "== $name (limit ${limit}s)"
  t0=$SECONDS
  timeout -k 10 "$limit" bash -c "step_$name" >"$WORK/logs/$name.log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; 124 | 137) status=TIMEOUT ;; *) status="FAIL($rc)" ;; esac
  tail -n 6 "$WORK/logs/$name.log" | cut -c 1-160 | sed 's/^/   | /'
  last=$(grep -v '^[[:space:]]*$' "$WORK/logs/$name.log" | tail -n 1 | cut -c 1-100)
  note "$name" "$status" "$((SECONDS - t0))s" "$last"
}

echo "gpu_session: ${GPU_NAME:-no GPU found} (tag $TAG), $PEER_NOTE, budget ${BUDGET_S}s, steps: $STEPS"
run_step env 30
run_step build 240
run_step tests 150
run_step memcheck 90
run_step racecheck 90
run_step bench_ops 180
run_step bench_attn 120
run_step bench_cli 150
run_step profile 100

# Bundle: the results this run wrote, the logs, loose copies of the main JSONs.
mapfile -t NEW < <(find "$RESULTS" -type f -newer "$WORK/start_marker" ! -name trace.json ! -name '*.pickle' | sort)
[ "${#NEW[@]}" -gt 0 ] && tar czf "$OUT/results.tar.gz" "${NEW[@]}"
for f in "$RESULTS/ops_cuda_$TAG.json" "$RESULTS/attention_$TAG.json" "$RESULTS/bench_cuda.json"; do
  [ -f "$f" ] && [ "$f" -nt "$WORK/start_marker" ] && cp "$f" "$OUT/"
done
PROFILE=$RESULTS/profile_cuda
[ -f "$PROFILE/summary.json" ] && [ "$PROFILE/summary.json" -nt "$WORK/start_marker" ] &&
  cp "$PROFILE/summary.json" "$OUT/profile_summary.json"
if [ -f "$PROFILE/trace.json" ] && [ "$PROFILE/trace.json" -nt "$WORK/start_marker" ]; then
  gzip -c "$PROFILE/trace.json" >"$OUT/profile_trace.json.gz"
  if [ "$(stat -c %s "$OUT/profile_trace.json.gz")" -gt $((16 * 1024 * 1024)) ]; then
    rm -f "$OUT/profile_trace.json.gz"
    note trace dropped - "profile_trace.json.gz over 16 MiB"
  fi
fi
"$PY" - "$WORK" >"$WORK/key_figures.txt" 2>&1 <<'EOF'
"""Key ratios from the raw runs: CUDA-event medians of ours against each peer, fused attention vs best SDPA."""
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*_run.json"))):
    try:
        benchmarks = json.load(open(path))["benchmarks"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"{os.path.basename(path)}: unreadable ({exc})")
        continue
    for b in benchmarks:
        x = b.get("extra_info", {})
        if x.get("role") == "ours" and "median_ms" in x:
            us = f" {x['us_per_iteration']:.2f} us/iter" if "us_per_iteration" in x else ""
            ratios = ", ".join(f"{v:.2f}x vs {k}" for k, v in x.get("speedup_vs", {}).items())
            print(f"{b['group']}: {x['median_ms']:.4f} ms{us}; {ratios}")
        elif "triton_fused" in b["name"] and "speedup_vs_best_sdpa" in x:
            print(f"{b['name']}: {x['median_ms']:.4f} ms; {x['speedup_vs_best_sdpa']:.2f}x vs {x['best_sdpa']}")
EOF
{
  echo "gpu_session on ${GPU_NAME:-no GPU} (tag $TAG), $PEER_NOTE, $((SECONDS - START))s of ${BUDGET_S}s"
  printf '%s\n' "${SUMMARY[@]}"
  echo "-- key figures (CUDA-event medians)"
  cat "$WORK/key_figures.txt"
  echo "-- $OUT: $(cd "$OUT" && ls | tr '\n' ' ')logs.tar.gz"
} >"$WORK/summary.txt"
cp "$WORK/summary.txt" "$OUT/summary.txt"
tar czf "$OUT/logs.tar.gz" -C "$WORK" --exclude=start_marker .
echo
cat "$OUT/summary.txt"
