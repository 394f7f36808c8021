"""Input checks shared by the point ops.

Every check raises a ValueError/TypeError whose single-line message names the argument and what was
expected, so that nothing malformed ever reaches a kernel (no segfaults, no errors from inside C++/CUDA).
The ``normalize_*`` helpers return the canonical arguments the kernels take: contiguous clouds, int64
``lengths`` (B,) and int64 ``start`` (B,) on the points' device.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _type_name(value) -> str:
    return type(value).__name__


def check_cloud(name: str, value) -> None:
    """A (B, N, 3) float32/float16/bfloat16 tensor with N >= 1."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, N, 3), got {_type_name(value)}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {value.dtype}")
    if value.dim() != 3 or value.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, N, 3), got {tuple(value.shape)}")
    if value.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one point per cloud, got shape {tuple(value.shape)}")


def _all_finite(value: torch.Tensor) -> bool:
    # On the CPU, numpy's single-threaded min/max (NaN propagates) rather than torch ops that run in torch's
    # thread pool: those wait a scheduler time slice per op when another process shares a core.
    if value.device.type == "cpu" and value.dtype in (torch.float32, torch.float16):
        array = value.detach().numpy()
        return bool(array.min() > -np.inf) and bool(array.max() < np.inf)
    return bool(torch.isfinite(value).all())


def check_finite(name: str, value: torch.Tensor) -> None:
    if value.numel() and not _all_finite(value):
        raise ValueError(f"{name} must be finite, found NaN or Inf (pass check_finite=False to skip this check)")


def check_same_batch(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if value.device != ref.device:
        raise ValueError(f"{name} must be on the same device as {ref_name} ({ref.device}), got {value.device}")
    if value.dtype != ref.dtype:
        raise TypeError(f"{name} must have the same dtype as {ref_name} ({ref.dtype}), got {value.dtype}")
    if value.shape[0] != ref.shape[0]:
        raise ValueError(f"{name} must have the same batch size as {ref_name} ({ref.shape[0]}), got {value.shape[0]}")


def check_int(name: str, value, low: int, high: int, what: str) -> int:
    """An integer (not bool) in [low, high]; ``what`` says where ``high`` comes from."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_type_name(value)}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}] ({what}), got {value}")
    return value


def _check_index_tensor(name: str, value, batch: int) -> torch.Tensor:
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
    if value.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(value.shape)}")
    return value.to(torch.int64)


def normalize_lengths(lengths, points: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Returns int64 lengths (B,) on the points' device and the smallest length (N when ``lengths`` is None)."""
    batch, n = points.shape[0], points.shape[1]
    if lengths is None:
        return torch.full((batch,), n, dtype=torch.int64, device=points.device), n
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"lengths must be a torch.Tensor of shape ({batch},) or None, got {_type_name(lengths)}")
    lengths = _check_index_tensor("lengths", lengths, batch).to(points.device)
    if batch == 0:
        return lengths, n
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > n:
        raise ValueError(f"lengths must be in [1, {n}] (points per cloud), got values in [{low}, {high}]")
    return lengths, low


def normalize_start(start_index, lengths: torch.Tensor, min_length: int, generator=None) -> torch.Tensor:
    """int, LongTensor (B,) or "random" -> int64 start indices (B,) on the lengths' device."""
    batch, device = lengths.shape[0], lengths.device
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {_type_name(generator)}")
    if isinstance(start_index, str):
        if start_index != "random":
            raise ValueError(f'start_index must be an int, a LongTensor (B,) or "random", got {start_index!r}')
        gen_device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(batch, generator=generator, device=gen_device, dtype=torch.float64)
        if u.device.type == "cpu" and device.type == "cuda":
            # A blocking (or pageable) host-to-GPU copy waits for the GPU: a training step with
            # fps_start="random" made one. From pinned memory it is queued; torch keeps the buffer until done.
            u = u.pin_memory().to(device, non_blocking=True)
        u = u.to(device)
        start = (u * lengths.to(torch.float64)).to(torch.int64)
        return torch.minimum(start, lengths - 1)
    if isinstance(start_index, torch.Tensor):
        start = _check_index_tensor("start_index", start_index, batch).to(device)
        if batch and (bool((start < 0).any()) or bool((start >= lengths).any())):
            raise ValueError("start_index must satisfy 0 <= start_index[b] < lengths[b] (points in cloud b)")
        return start.contiguous()
    if isinstance(start_index, bool) or not isinstance(start_index, numbers.Integral):
        raise TypeError(f'start_index must be an int, a LongTensor (B,) or "random", got {_type_name(start_index)}')
    start = check_int("start_index", start_index, 0, min_length - 1, "points in the smallest cloud")
    return torch.full((batch,), start, dtype=torch.int64, device=device)


def normalize_fps(points, num_samples, start_index, lengths, generator, check_finite_values: bool):
    """Validated (points contiguous, lengths (B,), start (B,), num_samples) for farthest-point sampling."""
    check_cloud("points", points)
    what = "points per cloud" if lengths is None else "points in the smallest cloud"
    lengths, min_length = normalize_lengths(lengths, points)
    num_samples = check_int("num_samples", num_samples, 1, min_length, what)
    start = normalize_start(start_index, lengths, min_length, generator)
    if check_finite_values:
        check_finite("points", points)
    return points.contiguous(), lengths, start, num_samples


def _check_query_cloud(name: str, tensor, points) -> None:
    """`points` a valid cloud and `tensor` a (B, M, 3) tensor of query points for the same batch."""
    check_cloud("points", points)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, M, 3), got {_type_name(tensor)}")
    if tensor.dim() != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, M, 3), got {tuple(tensor.shape)}")
    check_same_batch(name, tensor, "points", points)


def normalize_knn(queries, points, k, lengths, check_finite_values: bool):
    """Validated (queries, points contiguous, lengths (B,), k) for k-nearest neighbours."""
    _check_query_cloud("queries", queries, points)
    what = "points per cloud" if lengths is None else "points in the smallest cloud"
    lengths, min_length = normalize_lengths(lengths, points)
    k = check_int("k", k, 1, min_length, what)
    if check_finite_values:
        check_finite("queries", queries)
        check_finite("points", points)
    return queries.contiguous(), points.contiguous(), lengths, k


def normalize_group(points, centers, k, check_finite_values: bool):
    """Validated (points, centers, k) for grouping; the tensors keep their autograd history."""
    _check_query_cloud("centers", centers, points)
    k = check_int("k", k, 1, points.shape[1], "points per cloud")
    if check_finite_values:
        check_finite("centers", centers)
        check_finite("points", points)
    return points, centers, k
