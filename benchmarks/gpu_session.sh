#!/usr/bin/env bash
# Everything that needs a GPU, in one command of at most 8 minutes on an H200, from the repository root:
#
#   bash benchmarks/gpu_session.sh --out /tmp/gpu_session --archive "$OUT/gpu_session.tar.gz"
#   bash benchmarks/gpu_session.sh --quick                       # CI-sized; runs on a CPU too (CI does this)
#   bash benchmarks/gpu_session.sh --steps build,tests --limit tests=120   # a subset, a limit raised
#
# Sized for a short GPU lease (about 15 minutes with the machine's start and any retry, at most 10 minutes per
# command): the default steps below have limits that sum to 545 s, plus at most 10 s of packing: 9.3 minutes at
# the very most (limits are caps: without a carried pointnet2_ops source the peers step takes seconds), leaving
# time for the start. Each step runs under `timeout` at its limit; a failed or timed-out step does not stop the
# next. Seen on an H200 (2026-12-04): build 41 s, memcheck 6-16 s, the attention suite 44 s (mostly Triton
# compiling), profile 36-42 s at 20 steps, the demo 50 s of pretraining before its probe.
#
#   step             limit s  what                                                   without CUDA
#   wheels                10  pip install --no-index .whl/*.whl into a scratch site  skipped when no .whl/
#   env                   15  nvidia-smi, nvcc, compute-sanitizer, every installed package's version
#   build                 60  crossjepa._C with CUDA for TORCH_CUDA_ARCH_LIST (9.0), in place        skipped
#   peers                 60  the FPS peers that compile: pointnet2_ops from .peers/pointnet2_ops_lib (CUDA,
#                             its hard-coded arch list patched to TORCH_CUDA_ARCH_LIST), torch-fps's C++
#                             CPU kernels (on a CPU run; built at first use)       nothing to do: ok, says so
#   tests                 75  the CUDA tests (pytest -k 'cuda or gpu or ops_backend', 5 files)     skipped
#   sync                  30  the test that runs training steps under set_sync_debug_mode("error") skipped
#   memcheck              20  compute-sanitizer memcheck over tools/sanitize_ops.py                skipped
#   bench_ops             40  crossjepa bench --suite ops        \   each case's calls stop once they
#   bench_attention       45  crossjepa bench --suite attention   |  have used --case-budget 2 s; the
#   bench_loaders         25  crossjepa bench --suite loaders     |  rest is start-up, data preparation
#   bench_train           30  crossjepa bench --suite train       |  and Triton compiling; no torch.compile
#   bench_cache           30  crossjepa bench --suite cache      /   cases (they need --compile)
#   profile               30  crossjepa profile, 10 steps (--quick: 2 steps of 2 objects)
#   demo                  75  crossjepa demo --device cuda                          skipped with --quick
#   total                545  (+ packing, at most 10 s)
#   racecheck             60  compute-sanitizer racecheck: only when --steps names it             skipped
#
# --quick: CI-sized bench suites and profile on whatever device there is, each limit x3 (a CPU, shared, is
# slower); the demo is skipped (its 400 test objects take minutes on a CPU; tests/test_demo.py runs it small).
#
# Results, each written as its step finishes, all under --out DIR (default /tmp/crossjepa_gpu_session; it must
# be empty or absent):
#   summary.txt            one line per step: status (ok, skipped (why), FAIL(exit code), TIMEOUT), seconds,
#                          limit, the log's last line; then the total
#   logs/<step>.log        each step's output
#   bench/*.json           crossjepa bench results, rewritten after every case (a timed-out suite keeps its rows)
#   profile/               trace.json, top_ops.txt, memory_timeline.png, summary.json, memory_snapshot.pickle
#   demo/                  report.json, view_grid.png and the run's loss_curve.png, metrics.jsonl,
#                          heldout.jsonl, runtime.json
# then packed by benchmarks/pack_results.sh into --archive (default DIR.tar.gz) of at most --archive-limit bytes
# (default 16 MiB, so it fits a 16 MiB per-file transfer limit), largest files left out first and listed in
# DIR/archive_manifest.txt. Exit status 0 when every step is ok or skipped, else 1.
#
# Wheels: a GPU machine without a package registry can still get a missing Python package (DIR/logs/env.log lists
# every installed one) as wheels in .whl/ at the repository root, fetched beforehand on a machine with the index
# (`pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl
# NAME==VERSION`, one per package, with its missing dependencies) and copied with the checkout. The wheels step
# installs them with --no-index --no-deps into a scratch folder put first on PYTHONPATH for the later steps;
# wheels of torch, triton and nvidia-* are left out, so the machine's own CUDA torch stack is what runs.
# Bring the ops suite's FPS peers (crossjepa/perf/peers.py) this way: torch-fps==0.6.0 (one pure-Python wheel,
# torch_fps-0.6.0-py3-none-any.whl) and the CUDA build of torch-quickfps matching the machine's torch
# (torch-quickfps-cu130==2.1.0 for a CUDA 13 torch, as on the lent H100/H200; -cu128 for CUDA 12). Without them
# their rows say "not installed".
#
# pointnet2_ops is not on the package index: its users build it from source. Copy the pointnet2_ops_lib folder
# of erikwijmans/Pointnet2_PyTorch to .peers/pointnet2_ops_lib (ignored by git; name .peers in the device
# tool's carry) and the peers step builds it in a scratch copy, the way its users do: its setup.py and the
# JIT fallback in pointnet2_utils.py hard-code TORCH_CUDA_ARCH_LIST="3.7+PTX;...;7.5", which CUDA 12+ cannot
# compile (Pointnet2_PyTorch #190), so the assignment becomes a default and TORCH_CUDA_ARCH_LIST (9.0) wins.
# The ops suite then times its FPS beside ours.
#
# Environment: PYTHON (python3), TORCH_CUDA_ARCH_LIST (9.0), MAX_JOBS (16), SANITIZER (compute-sanitizer on PATH,
# else /usr/local/cuda/bin/compute-sanitizer).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

DEFAULT_STEPS=(wheels env build peers tests sync memcheck bench_ops bench_attention bench_loaders bench_train
  bench_cache profile demo)
ALL_STEPS=("${DEFAULT_STEPS[@]}" racecheck)
declare -A LIMIT=([wheels]=10 [env]=15 [build]=60 [peers]=60 [tests]=75 [sync]=30 [memcheck]=20 [bench_ops]=40
  [bench_attention]=45 [bench_loaders]=25 [bench_train]=30 [bench_cache]=30 [profile]=30 [demo]=75 [racecheck]=60)
NEEDS_CUDA=" build tests sync memcheck racecheck "
PACK_LIMIT_S=10

die() { echo "gpu_session.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

QUICK=0 DIR=/tmp/crossjepa_gpu_session ARCHIVE="" ARCHIVE_LIMIT=16777216 STEPS="${DEFAULT_STEPS[*]}"
declare -A OVERRIDE=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --out) DIR=${2:?--out: expected a folder}; shift ;;
    --archive) ARCHIVE=${2:?--archive: expected a file path}; shift ;;
    --archive-limit) ARCHIVE_LIMIT=${2:?--archive-limit: expected bytes}; shift ;;
    --steps) STEPS=${2:?--steps: expected comma-separated steps}; STEPS=${STEPS//,/ }; shift ;;
    --limit) spec=${2:?--limit: expected STEP=SECONDS}; shift
      [[ $spec =~ ^([a-z_]+)=([1-9][0-9]*)$ && -n ${LIMIT[${BASH_REMATCH[1]}]:-} ]] ||
        die "--limit: expected STEP=SECONDS with a step from: ${ALL_STEPS[*]}; got $spec"
      OVERRIDE[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]} ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
for name in $STEPS; do
  [[ " ${ALL_STEPS[*]} " == *" $name "* ]] || die "--steps: unknown step '$name'; expected some of: ${ALL_STEPS[*]}"
done
[[ $ARCHIVE_LIMIT =~ ^[1-9][0-9]*$ ]] || die "--archive-limit: expected a positive number of bytes, got $ARCHIVE_LIMIT"
[ ! -e "$DIR" ] || [ -z "$(ls -A "$DIR")" ] || die "--out: $DIR is not empty; give a new folder"
mkdir -p "$DIR/logs" "$DIR/bench" || die "--out: cannot create $DIR"
DIR=$(cd "$DIR" && pwd)
ARCHIVE=${ARCHIVE:-$DIR.tar.gz}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/crossjepa_gpu_session_work.XXXXXX")  # scratch: never packed
trap 'rm -rf "$WORK"' EXIT

export PY=${PYTHON:-python3} DIR WORK QUICK
export SANITIZER=${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
HAVE_CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
DEV=cpu QUICK_FLAG=""
[ "$HAVE_CUDA" = 1 ] && DEV=cuda
[ "$QUICK" = 1 ] && QUICK_FLAG=--quick
export DEV QUICK_FLAG CASE_BUDGET=2

# --------------------------------------------------------------------------------------------------- steps

step_wheels() {
  local wheels=() skipped=() w
  for w in .whl/*.whl; do
    case ${w##*/} in torch-* | triton-* | nvidia_*) skipped+=("$w") ;; *) wheels+=("$w") ;; esac
  done
  [ ${#skipped[@]} -eq 0 ] || echo "left out (the machine's own torch stack stays): ${skipped[*]}"
  [ ${#wheels[@]} -gt 0 ] || { echo "no wheels to install"; return 0; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    "${wheels[@]}" && echo "installed into $WORK/site: ${wheels[*]}"
}

step_env() {
  if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
  if command -v nvcc >/dev/null; then nvcc --version | tail -n 2; else echo "nvcc: not found"; fi
  if [ -x "$SANITIZER" ]; then "$SANITIZER" --version | head -n 2; else echo "compute-sanitizer: not found"; fi
  echo "cpus: $(nproc)"
  free -g 2>/dev/null | head -n 2
  "$PY" - <<'EOF'
import json
import os
from importlib import metadata

from crossjepa.perf.env import environment

print(json.dumps(environment(os.environ["DEV"]), indent=1))
print("installed:", " ".join(sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())))
try:
    import torch  # noqa: F401  (pointnet2_ops needs it loaded first)
    import pointnet2_ops.pointnet2_utils  # noqa: F401
    print("pointnet2_ops: importable")
except ImportError:
    print("pointnet2_ops: not importable (the ops suite notes its FPS peer as unavailable)")
EOF
}

step_build() {
  TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} FORCE_CUDA=1 CROSSJEPA_STRICT_BUILD=1 MAX_JOBS=${MAX_JOBS:-16} \
    "$PY" setup.py build_ext --inplace || return
  "$PY" -c 'import torch
import crossjepa._C as c
from crossjepa import ops
assert c.with_cuda(), "crossjepa._C has no CUDA kernels"
print("backends on cuda:", {op: ops.backend(op, "cuda") for op in ("farthest_point_sample", "knn", "group")})'
}

step_peers() {
  local src=.peers/pointnet2_ops_lib lib=$WORK/pointnet2_ops_lib did=0
  if [ "$DEV" = cpu ]; then  # torch-fps builds its C++ CPU kernels at first use: here, not inside a timed suite
    "$PY" -c 'from crossjepa.perf.peers import torch_fps
peer = torch_fps(__import__("torch").device("cpu"))
print("torch-fps on the CPU:", peer.backend, peer.note)' || return
    did=1
  fi
  if [ -d "$src" ] && [ "$DEV" = cuda ]; then
    cp -r "$src" "$lib" || return
    grep -rlE --include='*.py' 'os\.environ\["TORCH_CUDA_ARCH_LIST"\] *=' "$lib" | while read -r file; do
      sed -i -E 's/os\.environ\["TORCH_CUDA_ARCH_LIST"\] *= *(.*)$/os.environ.setdefault("TORCH_CUDA_ARCH_LIST", \1)/' "$file"
      echo "patched the arch list of $file: $(grep -h 'TORCH_CUDA_ARCH_LIST' "$file" | head -n 1 | sed 's/^ *//')"
    done
    (cd "$lib" && TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} "$PY" setup.py build_ext \
      --inplace) || return
    PYTHONPATH="$lib:$PYTHONPATH" "$PY" -c 'import torch
from pointnet2_ops import pointnet2_utils
print("pointnet2_ops: built and importable")' || return
    did=1
  elif [ -d "$src" ]; then
    echo "pointnet2_ops: source carried, but it builds CUDA kernels only (no CUDA here)"
  fi
  [ "$did" = 1 ] || echo "no peer to build here (no .peers/pointnet2_ops_lib; torch-fps's CPU build only on a CPU run)"
}

step_tests() {
  "$PY" -m pytest tests/test_ops_cuda.py tests/test_attention.py tests/test_ops_backend.py tests/test_render.py \
    tests/test_perf.py -k "cuda or gpu or ops_backend" -q -rs -p no:cacheprovider --durations=10
}

step_sync() {  # the test that makes torch raise on any host sync during training steps, wherever it lives
  local files
  files=$(grep -l "set_sync_debug_mode" tests/test_*.py) || { echo "no test calls set_sync_debug_mode"; return 1; }
  # shellcheck disable=SC2086  # a list of paths
  "$PY" -m pytest $files -k "sync and cuda" -q -rs -p no:cacheprovider
}

sanitize() {  # sanitize TOOL
  "$SANITIZER" --tool "$1" --report-api-errors no --error-exitcode 3 "$PY" tools/sanitize_ops.py --device cuda
}
step_memcheck() { PYTORCH_NO_CUDA_MEMORY_CACHING=1 sanitize memcheck; }
step_racecheck() { sanitize racecheck; }

bench() {  # bench SUITE
  # shellcheck disable=SC2086  # QUICK_FLAG: empty or one flag
  "$PY" -m crossjepa bench --device "$DEV" --suite "$1" --case-budget "$CASE_BUDGET" --out "$DIR/bench" $QUICK_FLAG
}
step_bench_ops() { bench ops; }
step_bench_attention() { bench attention; }
step_bench_loaders() { bench loaders; }
step_bench_train() { bench train; }
step_bench_cache() { bench cache; }

step_profile() {
  local size=(--steps 10)
  [ "$QUICK" = 1 ] && size=(--steps 2 --batch-size 2)
  "$PY" -m crossjepa profile --device "$DEV" "${size[@]}" --out "$DIR/profile"
}

step_demo() {  # the demo's caches and checkpoints stay in the scratch folder; its report and records are kept
  "$PY" -m crossjepa demo --device "$DEV" --out "$WORK/demo" || return
  mkdir -p "$DIR/demo"
  cp "$WORK/demo/report.json" "$WORK/demo/view_grid.png" "$DIR/demo/" &&
    find "$WORK/demo/pretrain" -maxdepth 1 -type f \( -name '*.json' -o -name '*.jsonl' -o -name '*.png' \) \
      -exec cp -t "$DIR/demo/" {} +
}

export -f step_wheels step_env step_build step_peers step_tests step_sync sanitize step_memcheck step_racecheck bench \
  step_bench_ops step_bench_attention step_bench_loaders step_bench_train step_bench_cache step_profile step_demo

skip_reason() {  # why STEP does not run here, or nothing
  if [ "$1" = wheels ] && ! compgen -G ".whl/*.whl" >/dev/null; then echo "no .whl/"
  elif [[ $NEEDS_CUDA == *" $1 "* && $DEV != cuda ]]; then echo "no CUDA"
  elif [[ $1 == memcheck || $1 == racecheck ]] && [ ! -x "$SANITIZER" ]; then echo "no compute-sanitizer"
  elif [ "$1" = demo ] && [ "$QUICK" = 1 ]; then echo "--quick"
  fi
}

# ---------------------------------------------------------------------------------------------------- run

line() { printf '%-16s %-22s %7s %6s  %s\n' "$@" >>"$DIR/summary.txt"; }
line step status seconds limit "last line of logs/<step>.log"
echo "gpu_session: device $DEV$([ "$QUICK" = 1 ] && echo ', quick'), results in $DIR"
total=0 budget=0 failed=0
for name in "${ALL_STEPS[@]}"; do
  [[ " $STEPS " == *" $name "* ]] || continue
  limit=${OVERRIDE[$name]:-$((${LIMIT[$name]} * (QUICK ? 3 : 1)))}
  budget=$((budget + limit))
  reason=$(skip_reason "$name")
  if [ -n "$reason" ]; then
    line "$name" "skipped ($reason)" 0 "$limit" ""
    echo "== $name: skipped ($reason)"
    continue
  fi
  echo "== $name (limit $limit s)"
  t0=$SECONDS
  timeout -k 5 "$limit" bash -c "step_$name" >"$DIR/logs/$name.log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; 124 | 137) status=TIMEOUT ;; *) status="FAIL($rc)" ;; esac
  [ "$status" = ok ] || failed=1
  if [ "$name" = wheels ] && [ "$status" = ok ] && [ -d "$WORK/site" ]; then
    export PYTHONPATH="$WORK/site:$PYTHONPATH"  # the installed wheels, for every later step
  fi
  if [ "$name" = peers ] && [ "$status" = ok ] && [ -d "$WORK/pointnet2_ops_lib" ]; then
    export PYTHONPATH="$WORK/pointnet2_ops_lib:$PYTHONPATH"  # the built pointnet2_ops, for every later step
  fi
  last=$(tr '\r' '\n' <"$DIR/logs/$name.log" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c 1-100)
  line "$name" "$status" "$((SECONDS - t0))" "$limit" "$last"
  total=$((total + SECONDS - t0))
  tail -n 3 "$DIR/logs/$name.log" | tr '\r' '\n' | tail -n 3 | cut -c 1-160 | sed 's/^/   | /'
done
line total "" "$total" "$budget" ""
timeout "$PACK_LIMIT_S" bash benchmarks/pack_results.sh "$DIR" "$ARCHIVE" "$ARCHIVE_LIMIT" >"$WORK/pack.log" 2>&1
pack_rc=$?
pack_line=$(tail -n 1 "$WORK/pack.log")
echo "archive: $pack_line" >>"$DIR/summary.txt"  # after packing: the copy beside the archive says what it holds
echo
cat "$DIR/summary.txt"
[ "$pack_rc" -eq 0 ] && [ "$failed" -eq 0 ]
