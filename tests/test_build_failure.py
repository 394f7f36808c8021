"""A C++ build that fails without CROSSJEPA_STRICT_BUILD installs the package on the torch reference, loudly: the
compiler's first error line ends the build output, is recorded in the package, and is quoted by the one
warning crossjepa gives at run time. With CROSSJEPA_STRICT_BUILD=1 the same failure fails the build.

The compiler is broken on purpose (a CXX that fails every compile), on a copy of the build inputs, and ninja
runs one job (MAX_JOBS=1) so that it stops at the first failure: each build takes seconds."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ERROR_LINE = "broken-cxx: error: compiler broken on purpose by test_build_failure"
BUILD_INPUTS = ("setup.py", "pyproject.toml", "README.md", "tools/build_flags.py", "csrc")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the broken compiler is a POSIX shell script")


@pytest.fixture
def broken_tree(tmp_path):
    """A copy of the build inputs and of the Python package, with an extension left from an earlier build and a
    CXX that answers version queries as g++ does but fails every compile."""
    tree = tmp_path / "tree"
    for name in BUILD_INPUTS:
        source, target = ROOT / name, tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    shutil.copytree(ROOT / "crossjepa", tree / "crossjepa", ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    (tree / "crossjepa" / ("_C" + sysconfig.get_config_var("EXT_SUFFIX"))).write_bytes(b"stale")
    cxx = tmp_path / "broken-cxx"
    host = shutil.which("g++") or shutil.which("c++") or "false"
    cxx.write_text(
        f'#!/bin/sh\ncase "$1" in --version|-dump*|-v) exec {host} "$@";; esac\necho "{ERROR_LINE}" >&2\nexit 1\n'
    )
    cxx.chmod(0o755)
    return tree, cxx


def _build(tree, cxx, strict):
    env = {k: v for k, v in os.environ.items() if k not in ("CROSSJEPA_STRICT_BUILD", "FORCE_CUDA")}
    env.update(CXX=str(cxx), MAX_JOBS="1")
    if strict:
        env["CROSSJEPA_STRICT_BUILD"] = "1"
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_failed_build_is_recorded_and_named_by_the_one_runtime_warning(broken_tree):
    tree, cxx = broken_tree
    res = _build(tree, cxx, strict=False)
    assert res.returncode == 0, res.stdout + res.stderr
    # The banner closes the build output and quotes the compiler's own error line.
    tail = (res.stdout + res.stderr).strip().splitlines()[-5:]
    assert any("compiling crossjepa._C FAILED" in line for line in tail), tail
    assert any(ERROR_LINE in line for line in tail), tail
    assert (tree / "crossjepa" / "_build_failure.txt").read_text().strip() == ERROR_LINE
    assert list((tree / "crossjepa").glob("_C*")) == []  # the stale extension is gone, not silently used

    # At run time (crossjepa._C blocked: an editable install elsewhere could map it to another tree's build).
    code = (
        "import json, sys, warnings; sys.modules['crossjepa._C'] = None\n"
        "import torch, crossjepa.ops as ops\n"
        "p = torch.randn(2, 40, 3)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    for _ in range(2):\n"
        "        ops.farthest_point_sample(p, 4); ops.knn(p, p, 3); ops.group(p, p[:, :4], 3)\n"
        "print(json.dumps([str(w.message) for w in caught if issubclass(w.category, ops.ReferenceFallbackWarning)]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    messages = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(messages) == 1, messages
    assert "torch reference" in messages[0] and "failed at install time" in messages[0], messages
    assert ERROR_LINE in messages[0], messages


def test_strict_build_fails_on_the_same_error(broken_tree):
    tree, cxx = broken_tree
    res = _build(tree, cxx, strict=True)
    assert res.returncode != 0
    assert ERROR_LINE in res.stdout + res.stderr
    assert not (tree / "crossjepa" / "_build_failure.txt").exists()


@pytest.mark.parametrize(
    "nvcc, force, expected",
    [
        ("13.0", None, "building without CUDA: nvcc in {home} is CUDA 13.0, torch {torch} was built with CUDA 12.4"),
        ("13.0", "1", "RuntimeError: FORCE_CUDA=1 but nvcc in {home} is CUDA 13.0"),
        ("12.8", None, "building CUDA kernels for"),
    ],
)
def test_an_nvcc_of_another_cuda_major_builds_the_cpu_kernels(broken_tree, tmp_path, nvcc, force, expected):
    """A CUDA torch wheel (torch.version.cuda patched to 12.4 before cpp_extension reads it) beside a toolkit of
    another major, which torch's cpp_extension refuses: the CPU kernels, with a warning naming both (an error
    with FORCE_CUDA=1). An nvcc of the same major builds the CUDA kernels as before."""
    tree, cxx = broken_tree
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "nvcc").write_text(f'#!/bin/sh\necho "Cuda compilation tools, release {nvcc}, V{nvcc}.1"\n')
    (home / "bin" / "nvcc").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CROSSJEPA_STRICT_BUILD", "FORCE_CUDA")}
    env.update(CXX=str(cxx), MAX_JOBS="1", CUDA_HOME=str(home), **({"FORCE_CUDA": force} if force else {}))
    code = (
        "import runpy, sys, torch\n"
        "torch.version.cuda, torch.cuda._is_compiled, torch.cuda.is_available = '12.4', lambda: True, lambda: False\n"
        "sys.argv = ['setup.py', 'build_ext', '--inplace']; runpy.run_path('setup.py', run_name='__main__')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    out = res.stdout + res.stderr
    import torch

    assert expected.format(home=home, torch=torch.__version__) in out, out[-3000:]
    cpu_only = "building the CPU kernels only" in out
    assert cpu_only == (nvcc == "13.0" and force is None)
    if force:
        assert res.returncode != 0
