#!/usr/bin/env bash
# Compile-only check of every CUDA source under csrc/ (no GPU needed): nvcc -c against the installed torch's
# headers, with the flags and architectures setup.py builds with (both from tools/build_flags.py), under each
# C++ standard torch's BuildExtension may use (-std=c++17 up to torch 2.12, c++20 from 2.13). Prints one line
# per file and standard; exits non-zero if any fails (its compiler output is shown).
# Env: NVCC, PYTHON, TORCH_CUDA_ARCH_LIST (as for the build, e.g. "8.0;9.0+PTX"; default: build_flags.py's),
# CUDA_STD (standards to check, default "c++17 c++20"), JOBS (parallel nvcc processes, default: CPUs).
set -uo pipefail
cd "$(dirname "$0")/.."

NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
PYTHON=${PYTHON:-python}
STDS=${CUDA_STD:-c++17 c++20}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

if [ ! -x "$NVCC" ] && ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "check_cuda_compile: nvcc not found (set NVCC)" >&2
  exit 2
fi
INCLUDE_CMD="from torch.utils.cpp_extension import include_paths; print(' '.join(include_paths()))"
if ! TORCH_INCLUDES=$("$PYTHON" -c "$INCLUDE_CMD"); then
  echo "check_cuda_compile: cannot import torch with $PYTHON" >&2
  exit 2
fi
PY_INCLUDE=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
if ! NVCC_FLAGS=$("$PYTHON" tools/build_flags.py nvcc) || ! GENCODE=$("$PYTHON" tools/build_flags.py gencode); then
  exit 2  # build_flags.py has said why (e.g. a malformed TORCH_CUDA_ARCH_LIST)
fi
mapfile -t NVCC_FLAGS <<<"$NVCC_FLAGS"
mapfile -t GENCODE <<<"$GENCODE"

FLAGS=(-c "${NVCC_FLAGS[@]}" "${GENCODE[@]}" -Xcompiler -fPIC -DWITH_CUDA -I csrc -I "$PY_INCLUDE")
for dir in $TORCH_INCLUDES; do
  FLAGS+=(-I "$dir")
  # A CPU-only torch wheel lacks this generated header (it only sets a Windows export macro); skip it there.
  if [ -d "$dir/c10/cuda" ] && [ ! -f "$dir/c10/cuda/impl/cuda_cmake_macros.h" ]; then
    FLAGS+=(-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE)
  fi
done
ARCH_LABEL=$("$PYTHON" tools/build_flags.py cmake-archs)

mapfile -t SOURCES < <(find csrc -name '*.cu' | sort)
if [ "${#SOURCES[@]}" -eq 0 ]; then
  echo "check_cuda_compile: no .cu files under csrc/" >&2
  exit 1
fi
CHECKS=()
for std in $STDS; do
  for src in "${SOURCES[@]}"; do CHECKS+=("$std $src"); done
done

OBJ_DIR=$(mktemp -d)
trap 'rm -rf "$OBJ_DIR"' EXIT
compile() {  # $1 = "std source", $2 = slot name; writes the log, the exit status and the seconds taken
  local start=$SECONDS std src
  read -r std src <<<"$1"
  "$NVCC" -std="$std" "${FLAGS[@]}" "$src" -o "$OBJ_DIR/$2.o" >"$OBJ_DIR/$2.log" 2>&1
  echo "$? $((SECONDS - start))" >"$OBJ_DIR/$2.status"
}
running=0
for n in "${!CHECKS[@]}"; do
  compile "${CHECKS[$n]}" "$n" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failures=0
for n in "${!CHECKS[@]}"; do
  read -r rc secs <"$OBJ_DIR/$n.status"
  read -r std src <<<"${CHECKS[$n]}"
  if [ "$rc" -eq 0 ]; then
    echo "OK    $src (-std=$std, $ARCH_LABEL, ${secs} s)"
  else
    echo "FAIL  $src (-std=$std, $ARCH_LABEL)"
    sed 's/^/      /' "$OBJ_DIR/$n.log"
    failures=$((failures + 1))
  fi
done
if [ "$failures" -ne 0 ]; then
  echo "check_cuda_compile: $failures of ${#CHECKS[@]} compiles failed" >&2
  exit 1
fi
