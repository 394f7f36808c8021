"""The settings of `crossjepa bench` and `crossjepa profile` (each field is a flag, crossjepa/config_flags.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from .. import shared_settings as shared
from ..config_io import setting
from ..models.config import PRESET_NAMES
from ..validate import check_device, check_int, check_number
from .suites import SUITES as SUITE_CASES

SUITES = tuple(SUITE_CASES)  # the suite names, in the order they run


def parse_suites(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SUITES]
    if not names or unknown:
        raise ValueError(f"suite: expected a comma-separated list from {','.join(SUITES)}, got {text!r}")
    return list(dict.fromkeys(names))


@dataclass
class BenchConfig:
    """Run benchmark suites on one device, print a table and write OUT/bench_<device>[_<suites>][_quick].json
    (environment, versions, commit, threading variables, shapes, median/min/max, throughput, peak memory,
    speed-up over each reference and its target)."""

    device: str = shared.device()
    quick: bool = setting(False, "CI-sized shapes and few repeats (seconds on a CPU)")
    suite: str = setting(",".join(SUITES), f"comma-separated suites to run, from {','.join(SUITES)}")
    case_budget: float = setting(
        10.0,
        "wall time one case's calls may use: its repeats stop once they have used it, and the row records how many "
        "ran (0: no budget)",
        metavar="SECONDS",
    )
    compile: bool = setting(False, "also time the torch.compile train-step cases (GPU only; compiling takes minutes)")
    out: str = shared.out("directory", "benchmarks/results", required=False)

    def __post_init__(self) -> None:
        check_device("device", self.device)
        parse_suites(self.suite)
        check_number("case_budget", self.case_budget, 0)


@dataclass
class ProfileConfig:
    """Run pretraining steps on synthetic data (synthetic teacher targets, no cache needed) under torch.profiler;
    write a Chrome/Perfetto trace, a top-ops table, a per-stage breakdown, peak memory, a memory-timeline PNG and
    summary.json to OUT."""

    device: str = shared.device()
    steps: int = setting(10, "profiled steps, after one warm-up step")
    preset: Optional[Literal[PRESET_NAMES]] = setting(None, "model preset (default: 'default' on CUDA, 'tiny' on CPU)")
    batch_size: Optional[int] = setting(None, "objects per step (default: 512 on CUDA, 4 on CPU)")
    views: int = setting(4, "views per object per step")
    out: str = shared.out("directory", "benchmarks/results/profile", required=False)

    def __post_init__(self) -> None:
        check_device("device", self.device)
        check_int("steps", self.steps, 1)
        check_int("batch_size", self.batch_size, 1, optional=True)
        check_int("views", self.views, 1)
