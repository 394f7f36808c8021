"""Turn a pytest-benchmark --benchmark-json run into benchmarks/results/<name>.json.

    python benchmarks/save_results.py RUN.json --name ops_cpu

The result records the machine (CPU model, cores, thread counts), python/torch/numpy versions, the git commit,
per-benchmark statistics (seconds), and per group the speed ratio peer/ours from the minimum and the median
time (benchmarks tag themselves with extra_info role="ours"/"peer", optionally target_speedup).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

STATS = ("min", "max", "mean", "median", "stddev", "rounds", "iterations")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(repo: Path) -> dict:
    def git(*args):
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"id": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def versions() -> dict:
    import numpy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "fpsample": peer_version("fpsample"),
    }


def peer_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def ratios(benchmarks: list[dict]) -> dict:
    groups: dict[str, dict] = {}
    for bench in benchmarks:
        role = bench["extra_info"].get("role")
        if role in ("ours", "peer"):
            groups.setdefault(bench["group"], {})[role] = bench
    out = {}
    for group, pair in sorted(groups.items()):
        if set(pair) != {"ours", "peer"}:
            continue
        ours, peer = pair["ours"], pair["peer"]
        entry = {
            "ours": ours["name"],
            "peer": peer["name"],
            "threads": ours["extra_info"].get("threads"),
            "speedup_min": peer["stats"]["min"] / ours["stats"]["min"],
            "speedup_median": peer["stats"]["median"] / ours["stats"]["median"],
        }
        target = ours["extra_info"].get("target_speedup")
        if target is not None:
            entry["target_speedup"] = target
            entry["meets_target"] = entry["speedup_min"] >= target and entry["speedup_median"] >= target
        out[group] = entry
    return out


def summarize(run: dict, repo: Path) -> dict:
    benchmarks = run.get("benchmarks")
    if not isinstance(benchmarks, list):
        raise ValueError("run must be a pytest-benchmark JSON file with a 'benchmarks' list")
    return {
        "machine": {
            "system": platform.system(),
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "logical_cores": os.cpu_count(),
        },
        "versions": versions(),
        "env": run.get("machine_info", {}).get("env"),  # recorded by benchmarks/conftest.py during the run
        "commit": git_commit(repo),
        "datetime": run.get("datetime"),
        "benchmarks": [
            {
                "name": b["name"],
                "group": b["group"],
                "extra_info": b["extra_info"],
                "stats_seconds": {k: b["stats"][k] for k in STATS if k in b["stats"]},
            }
            for b in benchmarks
        ],
        "ratios": ratios(benchmarks),
    }


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--name", required=True, help="result name: writes benchmarks/results/<name>.json")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parent.parent
    try:
        summary = summarize(json.loads(args.run.read_text()), repo)
    except (OSError, ValueError, KeyError) as exc:
        print(f"save_results: cannot read {args.run}: {exc}", file=sys.stderr)
        return 1
    out = repo / "benchmarks" / "results" / f"{args.name}.json"
    write_json(out, summary)
    for group, entry in summary["ratios"].items():
        verdict = "" if "meets_target" not in entry else f" (target {entry['target_speedup']}x: "
        verdict += "" if "meets_target" not in entry else ("met)" if entry["meets_target"] else "NOT met)")
        print(f"{group}: {entry['speedup_min']:.2f}x (min), {entry['speedup_median']:.2f}x (median){verdict}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
