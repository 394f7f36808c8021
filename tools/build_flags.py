"""Compiler flags and CUDA architectures of crossjepa._C, defined once: setup.py imports this file, and
CMakeLists.txt and tools/check_cuda_compile.sh run it.

Architectures follow torch's convention: TORCH_CUDA_ARCH_LIST holds entries such as 8.0, 9.0a or 9.0+PTX
(+PTX also embeds PTX, which newer GPUs compile at load time), separated by ';' or spaces. Unset or empty, it
is DEFAULT_CUDA_ARCH.

    python tools/build_flags.py nvcc|cxx           the flags, one per line
    python tools/build_flags.py gencode [SPEC]     nvcc -gencode flags for SPEC (default: TORCH_CUDA_ARCH_LIST)
    python tools/build_flags.py cmake-archs [SPEC] the same as CMAKE_CUDA_ARCHITECTURES, e.g. 80-real;90
"""

from __future__ import annotations

import os
import re
import sys

DEFAULT_CUDA_ARCH = "8.0;8.6;8.9;9.0+PTX"
ARCH_ENV = "TORCH_CUDA_ARCH_LIST"

# No FMA contraction (-ffp-contract=off, nvcc -fmad=false): distances match the torch reference bit for bit,
# so the kernels pick exactly the reference's FPS indices and neighbours.
CXX_FLAGS = ("-O3", "-ffp-contract=off")
# After our own flags, the ones torch's BuildExtension adds to every nvcc call: the CMake build and the
# compile check do not go through it, so they need them spelled out.
NVCC_FLAGS = (
    "-O3",
    "-fmad=false",
    "-lineinfo",
    "--expt-relaxed-constexpr",
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
)

_ENTRY = re.compile(r"(\d+)\.(\d)([af]?)(\+PTX)?")


def arch_spec(environ=os.environ) -> str:
    """The architecture list to build: TORCH_CUDA_ARCH_LIST, or DEFAULT_CUDA_ARCH when it is unset or empty."""
    return environ.get(ARCH_ENV, "").strip() or DEFAULT_CUDA_ARCH


def parse_arch_list(spec: str) -> list[tuple[str, bool]]:
    """ "8.0;9.0a+PTX" -> [("80", False), ("90a", True)]: (compute capability as nvcc spells it, embed PTX)."""
    archs = []
    for item in re.split(r"[;\s]+", spec.strip()):
        match = _ENTRY.fullmatch(item)
        if match is None:
            raise ValueError(
                f"{ARCH_ENV}: expected entries like 8.0, 9.0a or 9.0+PTX separated by ';' or "
                f"spaces, got {item!r} in {spec!r}"
            )
        archs.append((match.group(1) + match.group(2) + match.group(3), match.group(4) is not None))
    return archs


def gencode_flags(spec: str) -> list[str]:
    """nvcc flags: machine code (SASS) for every architecture, plus PTX where +PTX is given."""
    flags = []
    for arch, ptx in parse_arch_list(spec):
        flags.append(f"-gencode=arch=compute_{arch},code=sm_{arch}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{arch},code=compute_{arch}")
    return flags


def cmake_architectures(spec: str) -> str:
    """CMAKE_CUDA_ARCHITECTURES for the same list: "80-real" is SASS only, "90" adds PTX."""
    return ";".join(arch if ptx else f"{arch}-real" for arch, ptx in parse_arch_list(spec))


def main(argv: list[str]) -> int:
    commands = {
        "nvcc": lambda spec: NVCC_FLAGS,
        "cxx": lambda spec: CXX_FLAGS,
        "gencode": gencode_flags,
        "cmake-archs": lambda spec: [cmake_architectures(spec)],
    }
    if len(argv) not in (1, 2) or argv[0] not in commands:
        print(f"usage: build_flags.py {{{'|'.join(commands)}}} [ARCH_LIST]", file=sys.stderr)
        return 2
    spec = (argv[1].strip() if len(argv) == 2 else "") or arch_spec()
    try:
        lines = commands[argv[0]](spec)
    except ValueError as err:
        print(f"build_flags.py: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
