"""The environment a measurement was taken in: recorded beside every result so figures can be compared."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

_SOURCE = Path(__file__).resolve().parents[2]  # the folder holding the crossjepa package
# Variables that change how the CPU kernels and torch run their threads (OpenMP waiting, pool sizes, ISA).
THREADING_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "CROSSJEPA_")


def threading_env() -> dict:
    """The threading variables set in this process's environment (none set: the default environment)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(THREADING_PREFIXES)}


QUICKFPS_BUILDS = ("torch-quickfps", "torch-quickfps-cu130", "torch-quickfps-cu128")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    """stdout of a short command, or None when it is missing or fails."""
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit() -> dict:
    """HEAD of the source checkout the package runs from (an editable install, or a clone on the path) and whether
    it has local changes; "unknown" for an installed copy, whose folder is no checkout of its own (git would find
    whatever repository happens to contain site-packages)."""
    if not (_SOURCE / ".git").exists():
        return {"commit": "unknown", "dirty": None}
    commit = _run(["git", "rev-parse", "HEAD"], cwd=_SOURCE)
    if not commit:
        return {"commit": "unknown", "dirty": None}
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_SOURCE)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _cuda_record(device: torch.device) -> dict:
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    driver = _run(["nvidia-smi", f"--id={index}", "--query-gpu=driver_version", "--format=csv,noheader"])
    return {
        "device_name": props.name,
        "gpu_memory_gb": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "driver": driver or "unknown",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def environment(device: str | torch.device = "cpu") -> dict:
    """Device, driver, CUDA, library versions, CPU, threads and threading variables, commit and date (UTC) as a
    JSON-able dict."""
    device = torch.device(device)
    record = {
        "device": device.type,
        "device_name": cpu_model(),
        "driver": None,
        "cuda": torch.version.cuda,
        "cudnn": None,
    }
    if device.type == "cuda":
        record.update(_cuda_record(device))
    record.update(
        {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "triton": _version("triton"),
            "numpy": _version("numpy"),
            "fpsample": _version("fpsample"),
            "torch_fps": _version("torch-fps"),
            "torch_quickfps": next(  # one import name, a distribution per build (CPU, cu128, cu130)
                (f"{v} ({name})" for name in QUICKFPS_BUILDS if (v := _version(name)) != "not installed"),
                "not installed",
            ),
            "timm": _version("timm"),
            "threading_env": threading_env(),
            "git": git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    return record


def describe(record: dict) -> str:
    """One line for the top of a printed table."""
    name = record["device_name"]
    gpu = f" driver {record['driver']} CUDA {record['cuda']}" if record["device"] == "cuda" else ""
    commit = record["git"]["commit"][:12] + ("+dirty" if record["git"]["dirty"] else "")
    return (
        f"{name}{gpu} | torch {record['torch']} triton {record['triton']} | {record['torch_threads']} threads"
        f" | commit {commit} | {record['date']}"
    )
