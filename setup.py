"""Build of crossjepa and its compiled extension crossjepa._C (C++/OpenMP kernels, CUDA when available).

- torch not importable at build time (e.g. an isolated `pip install .`): the extension is skipped with a
  warning and the ops run on the torch reference. Use `pip install --no-build-isolation -e .` to compile it.
- CUDA kernels are compiled when torch has CUDA and nvcc is found (CUDA_HOME), or when FORCE_CUDA=1. An nvcc of
  another CUDA major than torch's (torch refuses to build with it) gives the CPU kernels only, with a warning
  naming both; with FORCE_CUDA=1 it is an error.
  Architectures: TORCH_CUDA_ARCH_LIST (torch's convention, e.g. "8.0;9.0+PTX"), default "8.0;8.6;8.9;9.0+PTX";
  the flags and the parsing are in tools/build_flags.py, shared with CMakeLists.txt and the nvcc compile check.
- A failed compile does not fail the install unless CROSSJEPA_STRICT_BUILD=1: the package then runs its ops
  on the torch reference. It is still loud: the reason (the compiler's first error line) ends the build output
  in a banner, goes to the terminal directly when there is one (pip shows a successful build's output only
  with -v), and is recorded in crossjepa/_build_failure.txt, which crossjepa quotes in its one warning.
"""

import glob
import importlib.util
import os
import re
import subprocess
import sys
import threading

from setuptools import setup
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError

CUDA_SOURCES = ("csrc/fps/fps_cuda.cu", "csrc/knn/knn_cuda.cu", "csrc/group/group_cuda.cu")
BUILD_FAILURE_NAME = "_build_failure.txt"  # inside the package; read by crossjepa/ops/dispatch.py


def warn(message):
    print(f"crossjepa setup: WARNING: {message}", file=sys.stderr)


class CapturedOutput:
    """Copies everything written to file descriptors 1 and 2 meanwhile (by this process and by its children:
    ninja and the compilers) to the original stdout as it comes, and keeps it, to quote the first error."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._chunks = []
        self._pump = threading.Thread(target=self._copy, args=(read_end,), daemon=True)
        self._pump.start()
        return self

    def _copy(self, read_end):
        while chunk := os.read(read_end, 1 << 16):
            self._chunks.append(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._saved[0], view) :]
        os.close(read_end)

    def __exit__(self, *exc_info):
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)  # closes the pipe's last write ends: the pump sees the end
        os.dup2(self._saved[1], 2)
        self._pump.join()
        for fd in self._saved:
            os.close(fd)

    def first_error(self):
        """The first line that reads like a compiler or ninja error, or ""."""
        lines = b"".join(self._chunks).decode(errors="replace").splitlines()
        for pattern in (r"\b(error|fatal)\s*:", r"^FAILED:"):
            for line in lines:
                if re.search(pattern, line, re.IGNORECASE) and "Error compiling objects" not in line:
                    return line.strip()
        return ""


def tell_terminal(message):
    """Writes to the controlling terminal, if any: pip hides the output of a build that succeeds."""
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(message + "\n")
    except OSError:  # no terminal (CI, a service), or no /dev/tty (Windows): the other channels remain
        pass


def load_build_flags():
    # By path: an isolated (PEP 517) build does not put the project folder on sys.path.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools", "build_flags.py")
    spec = importlib.util.spec_from_file_location("crossjepa_build_flags", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nvcc_release(cuda_home):
    """'13.0' from `CUDA_HOME/bin/nvcc --version`, or None when it does not run or says no release."""
    try:
        out = subprocess.run(
            [os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"release (\d+\.\d+)", out)
    return found.group(1) if found else None


def cuda_mismatch(torch, cuda_home):
    """Why torch would refuse this nvcc (another CUDA major than torch's own), or ""."""
    release = nvcc_release(cuda_home)
    if release is None or release.split(".")[0] == torch.version.cuda.split(".")[0]:
        return ""
    return (
        f"nvcc in {cuda_home} is CUDA {release}, torch {torch.__version__} was built with CUDA {torch.version.cuda} "
        "(torch builds extensions only with the same CUDA major; set CUDA_HOME to such a toolkit)"
    )


def want_cuda(torch, cuda_home):
    present = [path for path in CUDA_SOURCES if os.path.exists(path)]
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if torch.version.cuda is None:
            raise RuntimeError("FORCE_CUDA=1 but the installed torch has no CUDA support (torch.version.cuda is None)")
        if cuda_home is None or len(present) != len(CUDA_SOURCES):
            raise RuntimeError("FORCE_CUDA=1 but nvcc (CUDA_HOME) or one of the csrc/*/*_cuda.cu files is missing")
        if mismatch := cuda_mismatch(torch, cuda_home):
            raise RuntimeError(f"FORCE_CUDA=1 but {mismatch}")
        return True
    if torch.version.cuda is None or cuda_home is None:
        return False
    if len(present) != len(CUDA_SOURCES):
        warn(f"building without CUDA: expected {', '.join(CUDA_SOURCES)}, found {', '.join(present) or 'none'}")
        return False
    if mismatch := cuda_mismatch(torch, cuda_home):
        warn(f"building without CUDA: {mismatch}")
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
            # In place (build_ext --inplace, editable installs) the package is the source folder.
            in_place = self.inplace or getattr(self, "editable_mode", False)
            package_dir = "crossjepa" if in_place else os.path.join(self.build_lib, "crossjepa")
            record = os.path.join(package_dir, BUILD_FAILURE_NAME)
            with CapturedOutput() as output:
                try:
                    super().run()
                # SubprocessError: torch's compiler checks run the compiler, and raise when it fails.
                except (
                    CCompilerError,
                    CompileError,
                    ExecError,
                    LinkError,
                    RuntimeError,
                    OSError,
                    subprocess.SubprocessError,
                ) as exc:
                    error = exc
                else:
                    error = None
            if error is None:
                if os.path.exists(record):
                    os.remove(record)
                return
            if strict:
                raise error
            reason = output.first_error() or str(error).splitlines()[0]
            os.makedirs(package_dir, exist_ok=True)
            with open(record, "w", encoding="utf-8") as f:
                f.write(reason + "\n")
            if in_place:  # an extension left from an earlier build no longer matches the sources
                for ext in self.extensions:
                    stale = self.get_ext_filename(ext.name)  # relative to the project folder, the cwd
                    if os.path.exists(stale):
                        os.remove(stale)
            banner = "\n".join(
                [
                    "=" * 100,
                    "crossjepa setup: WARNING: compiling crossjepa._C FAILED; the point ops will run on the slower "
                    f"torch reference. First error: {reason}",
                    "Set CROSSJEPA_STRICT_BUILD=1 (and pip -v) to stop on the error and see the whole compiler output.",
                    "=" * 100,
                ]
            )
            print(banner, file=sys.stderr)
            tell_terminal(banner)

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
        print("crossjepa setup: building the CPU kernels only (no CUDA torch with a matching nvcc, FORCE_CUDA not 1)")
        ext = CppExtension(sources=sources, extra_compile_args={"cxx": cxx_flags}, **kwargs)
    return [ext], {"build_ext": OptionalBuildExtension}


ext_modules, cmdclass = extension_setup()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
