"""The FPS packages a user installs instead of crossjepa's kernels, each used when installed (`pip install
"crossjepa[peers]"`; on a GPU machine benchmarks/gpu_session.sh installs them from .whl/):

- torch-fps 0.6.0: C++ kernels on the CPU (compiled at first use; without a compiler it falls back to plain
  torch, and the row says so), Triton kernels on CUDA; also a fused FPS + kNN.
- torch-quickfps 2.1.0: exact FPS (`sample_idx_baseline`) and bucket-based FPS (`sample_idx`, QuickFPS: KD-tree
  buckets prune the distance updates, the result is the exact one). The PyPI wheel is CPU-only; its CUDA
  kernels come from torch-quickfps-cu128 / -cu130 (same import name).
- pointnet2_ops (CUDA; not on the package index, built from source: crossjepa.perf.references.pointnet2_fps).

Every peer samples from index 0, as crossjepa's FPS with start_index=0, each at its fastest documented
setting (torch-fps without its validation pass and host sync); all of them are exact, so the suite checks
that their indices equal ours.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from .case import first_line

INSTALL = "pip install 'crossjepa[peers]'"


@dataclass
class Peer:
    impl: str  # the benchmark row's name
    backend: str  # what runs, or why nothing does
    fn: Callable | None  # FPS: (points (B, N, 3) float32, m) -> (B, m) indices; None: not available here
    note: str = ""


def _torch_fps_backend(device: torch.device) -> tuple[str, str]:
    """(what torch-fps runs on `device`, a note when it is its plain-torch fallback). On the CPU this builds its
    C++ extension (first use: about a minute on 2 cores; cached in ~/.cache/torch_extensions), untimed."""
    if device.type == "cuda":
        return "torch-fps Triton", ""
    from torch_fps import _cpu  # documented: get_module() is the compiled extension, or None when it cannot build

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = _cpu.get_module() is not None
    if built:
        return "torch-fps C++ (built at first use)", ""
    why = first_line(caught[0].message) if caught else "its C++ extension did not build"
    return "torch-fps plain-torch fallback", why


def torch_fps(device: torch.device) -> Peer:
    """torch-fps's farthest_point_sampling."""
    try:
        import torch_fps as tf
    except ImportError:
        return Peer("torch-fps", "not installed", None, f"torch-fps not installed ({INSTALL})")

    def fps(points, m):
        mask = torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
        return tf.farthest_point_sampling(points, mask, m, random_start=False, validate=False, assume_finite=True)

    backend, note = _torch_fps_backend(device)
    return Peer("torch-fps", backend, fps, note)


def torch_quickfps(device: torch.device) -> list[Peer]:
    """torch-quickfps's exact and bucket-based FPS on `device` (for CUDA, a CUDA wheel of it must be installed)."""
    names = ("quickfps exact", "quickfps bucket")
    try:
        import torch_quickfps as q
    except ImportError:
        return [Peer(name, "not installed", None, f"torch-quickfps not installed ({INSTALL})") for name in names]
    exact = lambda p, m: q.sample_idx_baseline(p, m, start_idx=0)  # noqa: E731
    bucket = lambda p, m: q.sample_idx(p, m, start_idx=0)  # noqa: E731
    try:
        exact(torch.rand(1, 8, 3, device=device), 2)
    except (RuntimeError, NotImplementedError) as err:
        why = "its CUDA kernels come with torch-quickfps-cu128/-cu130" if device.type == "cuda" else ""
        note = f"{first_line(err)}{f' ({why})' if why else ''}"
        return [Peer(name, f"torch-quickfps on {device.type}", None, note) for name in names]
    return [
        Peer(names[0], "torch-quickfps vanilla FPS", exact),
        Peer(names[1], "torch-quickfps KD-tree buckets", bucket),
    ]


def fps_peers(device: torch.device) -> list[Peer]:
    return [torch_fps(device), *torch_quickfps(device)]


def torch_fps_with_knn(device: torch.device) -> Peer:
    """torch-fps's fused FPS + kNN: fn(points, m, k) -> (centers' indices (B, m), neighbours (B, m, k))."""
    try:
        import torch_fps as tf
    except ImportError:
        return Peer("torch-fps fused", "not installed", None, f"torch-fps not installed ({INSTALL})")

    def fps_knn(points, m, k):
        mask = torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
        return tf.farthest_point_sampling_with_knn(
            points, mask, m, k, random_start=False, validate=False, assume_finite=True
        )

    backend, note = _torch_fps_backend(device)
    return Peer("torch-fps fused", backend, fps_knn, note)
