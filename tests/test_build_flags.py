"""tools/build_flags.py: the architectures (TORCH_CUDA_ARCH_LIST, torch's format) and flags every build uses."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "build_flags.py"
_spec = importlib.util.spec_from_file_location("build_flags", SCRIPT)
flags = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flags)


@pytest.mark.parametrize("spec", ["8.0;9.0+PTX", "8.0 9.0+PTX", " 8.0 ;  9.0+PTX ", "8.0\t9.0+PTX"])
def test_semicolons_and_spaces_separate_entries(spec):
    assert flags.parse_arch_list(spec) == [("80", False), ("90", True)]
    assert flags.gencode_flags(spec) == [
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_90,code=sm_90",
        "-gencode=arch=compute_90,code=compute_90",
    ]
    assert flags.cmake_architectures(spec) == "80-real;90"


def test_arch_suffixes_and_two_digit_majors():
    assert flags.parse_arch_list("9.0a;10.0+PTX;12.0f") == [("90a", False), ("100", True), ("120f", False)]


@pytest.mark.parametrize("bad", ["8", "sm_80", "Ampere", "8.0,9.0", "8.0+ptx", ";"])
def test_a_bad_entry_is_one_error_naming_the_variable(bad):
    with pytest.raises(ValueError, match="TORCH_CUDA_ARCH_LIST: expected entries like 8.0"):
        flags.parse_arch_list(bad)


def test_the_environment_chooses_the_list_and_unset_or_empty_means_the_default():
    assert flags.arch_spec({"TORCH_CUDA_ARCH_LIST": "8.6"}) == "8.6"
    assert flags.arch_spec({}) == flags.arch_spec({"TORCH_CUDA_ARCH_LIST": "  "}) == flags.DEFAULT_CUDA_ARCH
    assert flags.parse_arch_list(flags.DEFAULT_CUDA_ARCH)  # the default itself parses


def test_no_fma_contraction_on_either_compiler():
    assert "-fmad=false" in flags.NVCC_FLAGS and "-ffp-contract=off" in flags.CXX_FLAGS


def _run(*args, env=None):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_the_command_line_prints_what_cmake_and_the_compile_check_read():
    assert _run("nvcc").stdout.splitlines() == list(flags.NVCC_FLAGS)
    assert _run("cmake-archs", "8.0;9.0+PTX").stdout.strip() == "80-real;90"
    assert _run("gencode", env={"TORCH_CUDA_ARCH_LIST": "8.6"}).stdout.split() == [
        "-gencode=arch=compute_86,code=sm_86"
    ]
    bad = _run("gencode", env={"TORCH_CUDA_ARCH_LIST": "Ampere"})
    assert bad.returncode == 2 and bad.stdout == "" and "TORCH_CUDA_ARCH_LIST" in bad.stderr
    assert _run("nope").returncode == 2
