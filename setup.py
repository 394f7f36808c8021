"""Build of crossjepa and its compiled extension crossjepa._C (C++/OpenMP kernels, CUDA when available).

- torch not importable at build time (e.g. an isolated `pip install .`): the extension is skipped with a
  warning and the ops run on the torch reference. Use `pip install --no-build-isolation -e .` to compile it.
- CUDA kernels are compiled when torch has CUDA and nvcc is found (CUDA_HOME), or when FORCE_CUDA=1.
  Architectures: TORCH_CUDA_ARCH_LIST (torch's convention, e.g. "8.0;9.0+PTX"), default "8.0;8.6;8.9;9.0+PTX";
  the flags and the parsing are in tools/build_flags.py, shared with CMakeLists.txt and the nvcc compile check.
- A failed compile does not fail the install (the package falls back to the reference and warns once per op)
  unless CROSSJEPA_STRICT_BUILD=1.
"""

import glob
import importlib.util
import os
import sys

from setuptools import setup
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError

CUDA_SOURCES = ("csrc/fps/fps_cuda.cu", "csrc/knn/knn_cuda.cu", "csrc/group/group_cuda.cu")


def warn(message):
    print(f"crossjepa setup: WARNING: {message}", file=sys.stderr)


def load_build_flags():
    # By path: an isolated (PEP 517) build does not put the project folder on sys.path.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools", "build_flags.py")
    spec = importlib.util.spec_from_file_location("crossjepa_build_flags", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    flags = load_build_flags()

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
        cxx_flags = list(flags.CXX_FLAGS)
        link_flags = []
    else:
        cxx_flags = [*flags.CXX_FLAGS, "-fopenmp"]
        link_flags = ["-fopenmp"]
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/*/*.cpp"))
    kwargs = dict(
        name="crossjepa._C",
        include_dirs=[os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")],
        extra_link_args=link_flags,
    )
    if want_cuda(torch, CUDA_HOME):
        arch = flags.arch_spec()
        nvcc_flags = [*flags.NVCC_FLAGS, *flags.gencode_flags(arch)]
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
