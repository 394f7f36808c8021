"""The `bench` and `profile` subcommands' arguments (the lead's cli.py adds them to its parser)."""

from __future__ import annotations

SUITES = ("ops", "attention", "loaders", "train", "cache", "probe")


def add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time ops, attention, loaders, the train step and the cache build vs references",
        description="Run benchmark suites on one device, print a table and write "
        "OUT/bench_<device>[_<suites>][_quick].json (environment, versions, commit, "
        "threading variables, shapes, median/min/max, throughput, peak memory, "
        "speed-up over each reference and its target, load level).",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto: cuda when available)")
    p.add_argument("--quick", action="store_true", help="CI-sized shapes and few repeats (seconds on a CPU)")
    p.add_argument(
        "--suite",
        default=",".join(SUITES),
        help=f"comma-separated suites to run, from {','.join(SUITES)} (default: all)",
    )
    p.add_argument(
        "--load",
        default="0",
        help="comma-separated numbers of background processes that each spin one core; every suite "
        "runs once per number, in order, and the spinners are killed after (default: 0)",
    )
    p.add_argument(
        "--case-budget",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="wall time one case's calls may use: its repeats stop once they have used it, and the row "
        "records how many ran (0: no budget; default 10)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time the torch.compile train-step cases (GPU only; compiling takes minutes)",
    )
    p.add_argument("--out", default="benchmarks/results", help="output directory (default: benchmarks/results)")


def add_profile_parser(sub) -> None:
    p = sub.add_parser(
        "profile",
        help="profile pretraining steps: trace, top ops, stages, memory timeline",
        description="Run N pretraining steps on synthetic data (synthetic teacher targets, no "
        "cache needed) under torch.profiler; write a Chrome/Perfetto trace, a top-ops "
        "table, a per-stage breakdown, peak memory, a memory-timeline PNG and "
        "summary.json to OUT.",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto: cuda when available)")
    p.add_argument("--steps", type=int, default=10, help="profiled steps, after one warm-up step (default 10)")
    p.add_argument("--preset", help="model preset (default: 'default' on CUDA, 'tiny' on CPU)")
    p.add_argument("--batch-size", type=int, help="objects per step (default: 512 on CUDA, 4 on CPU)")
    p.add_argument("--views", type=int, default=4, help="views per object per step (default 4)")
    p.add_argument(
        "--out", default="benchmarks/results/profile", help="output directory (default: benchmarks/results/profile)"
    )
