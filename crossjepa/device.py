"""Device selection shared by every command (train, eval, perf): one place that turns a --device string into
a torch.device and refuses CUDA where there is none."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda[:N]' without CUDA -> ValueError naming the fix."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine (use --device cpu)")
    return torch.device(name)
