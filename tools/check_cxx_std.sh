#!/usr/bin/env bash
# Syntax check of every C++ source under csrc/ (g++ -fsyntax-only, no build) under each C++ standard that some
# supported torch compiles extensions with: torch's cpp_extension passes -std=c++17 up to torch 2.12 and
# -std=c++20 from 2.13, so a C++20-only construct builds here yet breaks every install on an older torch.
# Each file is checked as the CPU-only build compiles it and, when CUDA headers are found, as the CUDA build
# does (-DWITH_CUDA). Prints one line per check; exits non-zero if any fails (its compiler output is shown).
# Env: CXX (default g++), PYTHON, CXX_STDS (default "c++17 c++20"), CUDA_HOME (default: torch's, else
# /usr/local/cuda), JOBS (parallel compiler processes, default: CPUs).
set -uo pipefail
cd "$(dirname "$0")/.."

CXX=${CXX:-g++}
PYTHON=${PYTHON:-python}
STDS=${CXX_STDS:-c++17 c++20}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

if ! TORCH_INCLUDES=$("$PYTHON" -c "from torch.utils.cpp_extension import include_paths; print(' '.join(include_paths()))"); then
  echo "check_cxx_std: cannot import torch with $PYTHON" >&2
  exit 2
fi
PY_INCLUDE=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
CUDA_HOME=${CUDA_HOME:-$("$PYTHON" -c "from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or '')")}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
mapfile -t CXX_FLAGS < <("$PYTHON" tools/build_flags.py cxx)

FLAGS=(-fsyntax-only -Wall -fopenmp "${CXX_FLAGS[@]}" -I csrc -I "$PY_INCLUDE")
for dir in $TORCH_INCLUDES; do FLAGS+=(-I "$dir"); done
VARIANTS=(cpu)
if [ -f "$CUDA_HOME/include/cuda_runtime_api.h" ]; then
  VARIANTS+=(cuda)
  CUDA_FLAGS=(-DWITH_CUDA -I "$CUDA_HOME/include")
  # A CPU-only torch wheel lacks this generated header (it only sets a Windows export macro); skip it there.
  for dir in $TORCH_INCLUDES; do
    if [ -d "$dir/c10/cuda" ] && [ ! -f "$dir/c10/cuda/impl/cuda_cmake_macros.h" ]; then
      CUDA_FLAGS+=(-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE)
    fi
  done
else
  echo "check_cxx_std: no CUDA headers under $CUDA_HOME: checking the CPU-only build's view only"
fi

mapfile -t SOURCES < <(find csrc -name '*.cpp' | sort)
if [ "${#SOURCES[@]}" -eq 0 ]; then
  echo "check_cxx_std: no .cpp files under csrc/" >&2
  exit 1
fi

LOG_DIR=$(mktemp -d)
trap 'rm -rf "$LOG_DIR"' EXIT
CHECKS=()
for std in $STDS; do
  for variant in "${VARIANTS[@]}"; do
    for src in "${SOURCES[@]}"; do CHECKS+=("$std $variant $src"); done
  done
done
check() {  # $1 = "std variant source", $2 = slot; writes the log and the exit status
  read -r std variant src <<<"$1"
  local extra=()
  [ "$variant" = cuda ] && extra=("${CUDA_FLAGS[@]}")
  "$CXX" -std="$std" "${FLAGS[@]}" "${extra[@]}" "$src" >"$LOG_DIR/$2.log" 2>&1
  echo $? >"$LOG_DIR/$2.status"
}
running=0
for n in "${!CHECKS[@]}"; do
  check "${CHECKS[$n]}" "$n" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failures=0
for n in "${!CHECKS[@]}"; do
  read -r std variant src <<<"${CHECKS[$n]}"
  if [ "$(cat "$LOG_DIR/$n.status")" -eq 0 ]; then
    echo "OK    $src (-std=$std, $variant)"
  else
    echo "FAIL  $src (-std=$std, $variant)"
    grep -E -A2 "error" "$LOG_DIR/$n.log" | head -30 | sed 's/^/      /'
    failures=$((failures + 1))
  fi
done
if [ "$failures" -ne 0 ]; then
  echo "check_cxx_std: $failures of ${#CHECKS[@]} checks failed" >&2
  exit 1
fi
