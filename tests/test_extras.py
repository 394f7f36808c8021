"""The optional extras in pyproject.toml: one DALI extra per CUDA major (a CUDA 12 torch must not get the CUDA 13
wheel), the benchmark peers at the versions the results name, and every extra that CI and the docs install
exists."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python >= 3.11's")
REPO = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_dali_has_one_extra_per_cuda_major():
    dali = {name: deps for name, deps in EXTRAS.items() if name.startswith("dali")}
    assert dali == {"dali-cuda12": ["nvidia-dali-cuda120"], "dali-cuda13": ["nvidia-dali-cuda130"]}


def test_peers_are_the_benchmarked_versions():
    pins = dict(re.match(r"([a-z0-9-]+)(.*)", dep).groups() for dep in EXTRAS["peers"])
    assert pins["torch-fps"] == "==0.6.0" and pins["torch-quickfps"] == "==2.1.0" and "fpsample" in pins


def test_every_extra_installed_by_ci_and_the_docs_is_declared():
    texts = [REPO / ".ci" / "run", REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md")]
    used = {
        extra.strip()
        for path in texts
        for group in re.findall(r"""(?:\.|crossjepa)\[([a-z0-9,-]+)\]""", path.read_text())
        for extra in group.split(",")
    }
    assert {"dev", "peers", "dali-cuda12", "dali-cuda13"} <= used
    assert used <= set(EXTRAS), used - set(EXTRAS)
