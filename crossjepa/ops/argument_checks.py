"""Argument checks of every kernel: the point ops (FPS, kNN, group) and attention.

Every check raises a ValueError/TypeError whose single-line message, in validate.py's style ("<name>: expected
<what>, got <value>"), names the argument and what was expected, so that nothing malformed ever reaches a kernel
(no segfaults, no errors from inside C++/CUDA).
The ``normalize_*`` helpers return the canonical arguments the kernels take: contiguous clouds, int64
``lengths`` (B,) and int64 ``start`` (B,) on the points' device.
"""

from __future__ import annotations

import numpy as np
import torch

from ..validate import check_int, is_int

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _type_name(value) -> str:
    return type(value).__name__


def check_cloud(name: str, value) -> None:
    """A (B, N, 3) float32/float16/bfloat16 tensor with N >= 1."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, N, 3), got {_type_name(value)}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32, float16 or bfloat16, got {value.dtype}")
    if value.dim() != 3 or value.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (B, N, 3), got {tuple(value.shape)}")
    if value.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one point per cloud, got shape {tuple(value.shape)}")


def _all_finite(value: torch.Tensor) -> bool:
    # On the CPU, numpy's single-threaded min/max (NaN propagates) rather than torch ops that run in torch's
    # thread pool: those wait a scheduler time slice per op when another process shares a core.
    if value.device.type == "cpu" and value.dtype in (torch.float32, torch.float16):
        array = value.detach().numpy()
        return bool(array.min() > -np.inf) and bool(array.max() < np.inf)
    return bool(torch.isfinite(value).all())


def check_finite(name: str, value: torch.Tensor) -> None:
    if value.numel() and not _all_finite(value):
        raise ValueError(f"{name}: expected finite values, found NaN or Inf (check_finite=False skips this check)")


def check_same_batch(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if value.device != ref.device:
        raise ValueError(f"{name}: expected {ref_name}'s device {ref.device}, got {value.device}")
    if value.dtype != ref.dtype:
        raise TypeError(f"{name}: expected {ref_name}'s dtype {ref.dtype}, got {value.dtype}")
    if value.shape[0] != ref.shape[0]:
        raise ValueError(f"{name}: expected {ref_name}'s batch size {ref.shape[0]}, got {value.shape[0]}")


def _check_index_tensor(name: str, value, batch: int) -> torch.Tensor:
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer tensor, got {value.dtype}")
    if value.shape != (batch,):
        raise ValueError(f"{name}: expected shape ({batch},), got {tuple(value.shape)}")
    return value.to(torch.int64)


def normalize_lengths(lengths, points: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Returns int64 lengths (B,) on the points' device and the smallest length (N when ``lengths`` is None)."""
    batch, n = points.shape[0], points.shape[1]
    if lengths is None:
        return torch.full((batch,), n, dtype=torch.int64, device=points.device), n
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"lengths: expected a torch.Tensor of shape ({batch},) or None, got {_type_name(lengths)}")
    lengths = _check_index_tensor("lengths", lengths, batch).to(points.device)
    if batch == 0:
        return lengths, n
    low, high = int(lengths.min()), int(lengths.max())
    if low < 1 or high > n:
        raise ValueError(f"lengths: expected values in [1, {n}] (points per cloud), got values in [{low}, {high}]")
    return lengths, low


def normalize_start(start_index, lengths: torch.Tensor, min_length: int, generator=None) -> torch.Tensor:
    """int, LongTensor (B,) or "random" -> int64 start indices (B,) on the lengths' device."""
    batch, device = lengths.shape[0], lengths.device
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {_type_name(generator)}")
    if isinstance(start_index, str):
        if start_index != "random":
            raise ValueError(f'start_index: expected "random", a LongTensor (B,) or an int, got {start_index!r}')
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
            raise ValueError("start_index: expected 0 <= start_index[b] < lengths[b] (points in cloud b)")
        return start.contiguous()
    if not is_int(start_index):
        raise TypeError(f'start_index: expected "random", a LongTensor (B,) or an int, got {_type_name(start_index)}')
    start = check_int("start_index", start_index, 0, min_length - 1, why="points in the smallest cloud")
    return torch.full((batch,), start, dtype=torch.int64, device=device)


def normalize_fps(points, num_samples, start_index, lengths, generator, check_finite_values: bool):
    """Validated (points contiguous, lengths (B,), start (B,), num_samples) for farthest-point sampling."""
    check_cloud("points", points)
    what = "points per cloud" if lengths is None else "points in the smallest cloud"
    lengths, min_length = normalize_lengths(lengths, points)
    num_samples = check_int("num_samples", num_samples, 1, min_length, why=what)
    start = normalize_start(start_index, lengths, min_length, generator)
    if check_finite_values:
        check_finite("points", points)
    return points.contiguous(), lengths, start, num_samples


def _check_query_cloud(name: str, tensor, points) -> None:
    """`points` a valid cloud and `tensor` a (B, M, 3) tensor of query points for the same batch."""
    check_cloud("points", points)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (B, M, 3), got {_type_name(tensor)}")
    if tensor.dim() != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (B, M, 3), got {tuple(tensor.shape)}")
    check_same_batch(name, tensor, "points", points)


def normalize_knn(queries, points, k, lengths, check_finite_values: bool):
    """Validated (queries, points contiguous, lengths (B,), k) for k-nearest neighbours."""
    _check_query_cloud("queries", queries, points)
    what = "points per cloud" if lengths is None else "points in the smallest cloud"
    lengths, min_length = normalize_lengths(lengths, points)
    k = check_int("k", k, 1, min_length, why=what)
    if check_finite_values:
        check_finite("queries", queries)
        check_finite("points", points)
    return queries.contiguous(), points.contiguous(), lengths, k


def normalize_group(points, centers, k, check_finite_values: bool):
    """Validated (points, centers, k) for grouping; the tensors keep their autograd history."""
    _check_query_cloud("centers", centers, points)
    k = check_int("k", k, 1, points.shape[1], why="points per cloud")
    if check_finite_values:
        check_finite("centers", centers)
        check_finite("points", points)
    return points, centers, k


def check_attention_args(q, k, v, key_padding_mask=None):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name}: expected shape (B, H, L, d), got {tuple(t.shape)}")
        if not t.is_floating_point() or t.dtype != q.dtype:
            raise TypeError(f"{name}: expected a floating tensor of q's dtype {q.dtype}, got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name}: expected a tensor on q's device {q.device}, got {t.device}")
    if v.shape != k.shape:
        raise ValueError(f"v: expected k's shape {tuple(k.shape)}, got {tuple(v.shape)}")
    if k.shape[:2] != q.shape[:2] or k.shape[3] != q.shape[3]:
        raise ValueError(f"k: expected shape ({q.shape[0]}, {q.shape[1]}, Lk, {q.shape[3]}), got {tuple(k.shape)}")
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            got = getattr(key_padding_mask, "dtype", type(key_padding_mask).__name__)
            raise TypeError(f"key_padding_mask: expected a bool tensor, got {got}")
        if key_padding_mask.shape != (k.shape[0], k.shape[2]) or key_padding_mask.device != q.device:
            raise ValueError(
                f"key_padding_mask: expected shape ({k.shape[0]}, {k.shape[2]}) on {q.device}, "
                f"got {tuple(key_padding_mask.shape)} on {key_padding_mask.device}"
            )
