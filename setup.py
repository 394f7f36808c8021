"""Build of crossjepa and its compiled extension crossjepa._C (C++/OpenMP kernels, CUDA when available).

- torch not importable at build time (e.g. an isolated `pip install .`): the extension is skipped with a
  warning and the ops run on the torch reference. Use `pip install --no-build-isolation -e .` to compile it.
- CUDA kernels are compiled when torch has CUDA and nvcc is found (CUDA_HOME), or when FORCE_CUDA=1.
  Architectures: CROSSJEPA_CUDA_ARCH (e.g. "8.0;9.0"; "+PTX" also embeds PTX), default "8.0;8.6;8.9;9.0+PTX".
- A failed compile does not fail the install (the package falls back to the reference and warns once per op)
  unless CROSSJEPA_STRICT_BUILD=1.
"""

import glob
import os
import re
import sys

from setuptools import setup
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError

DEFAULT_CUDA_ARCH = "8.0;8.6;8.9;9.0+PTX"
CUDA_SOURCES = ("csrc/fps/fps_cuda.cu", "csrc/knn/knn_cuda.cu", "csrc/group/group_cuda.cu")


def warn(message):
    print(f"crossjepa setup: WARNING: {message}", file=sys.stderr)


def cuda_arch_flags(spec):
    """ "8.0;9.0+PTX" -> nvcc -gencode flags (SASS for each arch, plus PTX where +PTX is given)."""
    flags = []
    for item in re.split(r"[;\s,]+", spec.strip()):
        if not item:
            continue
        match = re.fullmatch(r"(\d+)\.(\d+)(\+PTX)?", item)
        if match is None:
            raise ValueError(f"CROSSJEPA_CUDA_ARCH: expected entries like 8.0 or 9.0+PTX, got {item!r}")
        arch = match.group(1) + match.group(2)
        flags.append(f"-gencode=arch=compute_{arch},code=sm_{arch}")
        if match.group(3):
            flags.append(f"-gencode=arch=compute_{arch},code=compute_{arch}")
    return flags


def want_cuda(torch, cuda_home):
    present = [path for path in CUDA_SOURCES if os.path.exists(path)]
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if torch.version.cuda is None:
            raise RuntimeError("FORCE_CUDA=1 but the installed torch has no CUDA support (torch.version.cuda is None)")
        if cuda_home is None or len(present) != len(CUDA_SOURCES):
            raise RuntimeError("FORCE_CUDA=1 but nvcc (CUDA_HOME) or one of the csrc/*/*_cuda.cu files is missing")
        return True
    if torch.version.cuda is None or cuda_home is None:
        return False
    if len(present) != len(CUDA_SOURCES):
        warn(f"building without CUDA: expected {', '.join(CUDA_SOURCES)}, found {', '.join(present) or 'none'}")
        return False
    return True


def extension_setup():
    """(ext_modules, cmdclass) for crossjepa._C, or ([], {}) when torch is not importable at build time."""
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as exc:
        warn(
            f"torch is not importable at build time ({exc}): installing WITHOUT the compiled extension "
            "crossjepa._C; the ops will run on the slower torch reference. To compile it, install torch first "
            'and run `pip install --no-build-isolation -e ".[dev]"`.'
        )
        return [], {}

    strict = os.environ.get("CROSSJEPA_STRICT_BUILD", "0") == "1"

    class OptionalBuildExtension(BuildExtension):
        def run(self):
            try:
                super().run()
            except (CCompilerError, CompileError, ExecError, LinkError, RuntimeError, OSError) as exc:
                if strict:
                    raise
                warn(
                    f"compiling crossjepa._C failed ({exc}); the ops will run on the torch reference. "
                    "Set CROSSJEPA_STRICT_BUILD=1 to make this an error."
                )

    if sys.platform == "win32":
        cxx_flags = ["/O2", "/openmp", "/fp:precise"]
        link_flags = []
    elif sys.platform == "darwin":  # Apple clang has no -fopenmp: the kernels then run single-threaded
        cxx_flags = ["-O3", "-ffp-contract=off"]
        link_flags = []
    else:
        # -ffp-contract=off: no FMA contraction, so distances match the torch reference bit for bit.
        cxx_flags = ["-O3", "-fopenmp", "-ffp-contract=off"]
        link_flags = ["-fopenmp"]
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/*/*.cpp"))
    kwargs = dict(
        name="crossjepa._C",
        include_dirs=[os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")],
        extra_link_args=link_flags,
    )
    if want_cuda(torch, CUDA_HOME):
        arch = os.environ.get("CROSSJEPA_CUDA_ARCH", DEFAULT_CUDA_ARCH)
        # -fmad=false: same no-FMA rule as the CPU kernels, so CUDA FPS picks exactly the reference's indices.
        nvcc_flags = ["-O3", "-fmad=false", "-lineinfo", *cuda_arch_flags(arch)]
        print(f"crossjepa setup: building CUDA kernels for {arch} with {CUDA_HOME}/bin/nvcc")
        ext = CUDAExtension(
            sources=sources + sorted(glob.glob("csrc/*/*.cu")),
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            **kwargs,
        )
    else:
        print("crossjepa setup: building the CPU kernels only (no CUDA torch + nvcc, and FORCE_CUDA is not 1)")
        ext = CppExtension(sources=sources, extra_compile_args={"cxx": cxx_flags}, **kwargs)
    return [ext], {"build_ext": OptionalBuildExtension}


ext_modules, cmdclass = extension_setup()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
