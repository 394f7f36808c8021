#!/usr/bin/env bash
# Everything that needs a GPU, in one command from the repository root of a machine with CUDA:
#
#   bash benchmarks/gpu_session.sh                     # every step
#   STEPS="build tests" bash benchmarks/gpu_session.sh # a subset, run in the order below
#
# Steps (each under `timeout STEP_TIMEOUT`, logged; a failed step does not stop the next):
#   env        nvidia-smi, nvcc, compute-sanitizer and library versions, whether pointnet2_ops imports
#   build      crossjepa._C with CUDA for TORCH_CUDA_ARCH_LIST, in place (SKIP_BUILD=1: use the one built)
#   tests      pytest $TESTS (the CUDA and Triton tests), then the CUDA tests of the other test files
#   memcheck   compute-sanitizer memcheck over tools/sanitize_ops.py (no caching allocator: every tensor is
#              its own allocation, so an access past its end is caught)
#   racecheck  compute-sanitizer racecheck over tools/sanitize_ops.py
#   bench      crossjepa bench --device cuda, every suite       -> $OUT/results/bench_cuda.json
#   profile    crossjepa profile --device cuda --steps 20        -> $OUT/results/profile_cuda/
# Everything lands in $OUT: summary.txt (one line per step), logs/<step>.log, results/.
# Env: PYTHON (python3), OUT (/tmp/crossjepa_gpu_out), STEPS, STEP_TIMEOUT (900 s), TESTS, SANITIZER,
# TORCH_CUDA_ARCH_LIST (9.0), MAX_JOBS (16), SKIP_BUILD. pointnet2_ops, when importable, is the FPS peer
# of the ops suite.
set -uo pipefail
cd "$(dirname "$0")/.."

export PY=${PYTHON:-python3}
export OUT=${OUT:-/tmp/crossjepa_gpu_out}
export TESTS=${TESTS:-"tests/test_ops_cuda.py tests/test_attention.py tests/test_ops_backend.py"}
export SANITIZER=${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
STEPS=${STEPS:-"env build tests memcheck racecheck bench profile"}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
mkdir -p "$OUT/logs" "$OUT/results"

step_env() {
  nvidia-smi && nvcc --version | tail -n 2 && "$SANITIZER" --version | head -n 2
  "$PY" -c 'import json; from crossjepa.perf.env import environment; print(json.dumps(environment("cuda"), indent=1))'
  "$PY" -c 'import torch, pointnet2_ops.pointnet2_utils' 2>/dev/null && echo "pointnet2_ops: importable" ||
    echo "pointnet2_ops: not importable (the ops suite notes its FPS peer as unavailable)"
}

step_build() {
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} FORCE_CUDA=1 CROSSJEPA_STRICT_BUILD=1 MAX_JOBS=${MAX_JOBS:-16} \
      "$PY" setup.py build_ext --inplace || return
  fi
  "$PY" -c 'import torch, crossjepa._C as c; from crossjepa import ops; assert c.with_cuda(), "crossjepa._C has no CUDA"
print("backends on cuda:", {op: ops.backend(op, "cuda") for op in ("farthest_point_sample", "knn", "group")})'
}

step_tests() {
  local rc=0 extra
  # shellcheck disable=SC2086  # TESTS is a list of paths
  "$PY" -m pytest $TESTS -q -rs -p no:cacheprovider || rc=$?
  "$PY" -m pytest tests/test_render.py tests/test_perf.py -q -rs -k cuda -p no:cacheprovider
  extra=$?
  [ "$extra" -eq 5 ] && extra=0  # 5: no test matched
  [ "$rc" -ne 0 ] && return "$rc"
  return "$extra"
}

sanitize() {  # sanitize TOOL
  "$SANITIZER" --tool "$1" --report-api-errors no --error-exitcode 3 "$PY" tools/sanitize_ops.py --device cuda
}
step_memcheck() { PYTORCH_NO_CUDA_MEMORY_CACHING=1 sanitize memcheck; }
step_racecheck() { sanitize racecheck; }
step_bench() { "$PY" -m crossjepa bench --device cuda --out "$OUT/results"; }
step_profile() { "$PY" -m crossjepa profile --device cuda --steps 20 --out "$OUT/results/profile_cuda"; }
export -f step_env step_build step_tests sanitize step_memcheck step_racecheck step_bench step_profile

: >"$OUT/summary.txt"
for name in env build tests memcheck racecheck bench profile; do
  [[ " $STEPS " == *" $name "* ]] || continue
  echo "== $name"
  t0=$SECONDS
  timeout -k 10 "$STEP_TIMEOUT" bash -c "step_$name" >"$OUT/logs/$name.log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; 124 | 137) status=TIMEOUT ;; *) status="FAIL($rc)" ;; esac
  tail -n 4 "$OUT/logs/$name.log" | cut -c 1-160 | sed 's/^/   | /'
  printf '%-10s %-9s %5ss  %s\n' "$name" "$status" "$((SECONDS - t0))" \
    "$(grep -v '^[[:space:]]*$' "$OUT/logs/$name.log" | tail -n 1 | cut -c 1-100)" >>"$OUT/summary.txt"
done
echo
cat "$OUT/summary.txt"
