"""Every CUDA point-op kernel path once on small shapes, each result checked: the workload for compute-sanitizer.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --report-api-errors no \\
        --error-exitcode 3 python tools/sanitize_ops.py
    compute-sanitizer --tool racecheck --report-api-errors no --error-exitcode 3 python tools/sanitize_ops.py

(No caching allocator under memcheck: every tensor is its own allocation, so an access past its end is caught.)
Each path is forced in turn (CROSSJEPA_FPS_PATH = warp | block | global, CROSSJEPA_KNN_PATH = register | sort |
select; group runs under every kNN path) over float32/float16/bfloat16 with ragged lengths, N = 1, N not a
multiple of 32, duplicate points, k = N, non-contiguous inputs and query counts that give the register path
blocks of 1, 2, 3 and 4 warps. The device is synchronised after every call
and the result compared with the CPU torch reference. Prints one line per op; exit status 1 on a mismatch.
Without CUDA (or with --device cpu) the same cases run once on the CPU kernels, which checks this script.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import torch

from crossjepa import ops
from crossjepa.ops.reference import squared_distances

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FPS_PATHS = {"warp": 1024, "block": 8192, "global": None}  # path -> largest N it takes
KNN_PATHS = {"register": (32, None), "sort": (None, 4096), "select": (None, None)}  # path -> (max k, max N)
FPS_CASES = [(3, 1, 1), (3, 33, 17), (2, 1000, 64), (2, 4097, 50)]  # (B, N, M)
KNN_CASES = [
    (2, 5, 1, 1),
    (2, 17, 33, 8),
    (2, 40, 1000, 32),
    (1, 9, 700, 700),
    (1, 3, 5000, 40),
    (1, 2, 4500, 4100),
    # The register path's blocks (csrc/knn/register_blocks.h) on a 132-SM GPU: 3 warps split to 1 (also with a
    # last block partly filled), 4 warps split to 1, and blocks of 3, 2 and 4 warps where the grid fills the SMs.
    (1, 96, 300, 16),
    (2, 80, 500, 8),
    (1, 128, 200, 32),
    (140, 96, 40, 4),
    (100, 128, 40, 8),
    (140, 128, 40, 8),
]  # (B, M queries, N, k)
GROUP_CASES = [(2, 5, 1, 1), (2, 16, 1000, 32), (1, 8, 300, 300)]  # (B, M centers, N, k)


@contextlib.contextmanager
def forced(variable: str, path: str | None):
    old = os.environ.pop(variable, None)
    if path is not None:
        os.environ[variable] = path
    try:
        yield
    finally:
        os.environ.pop(variable, None)
        if old is not None:
            os.environ[variable] = old


def cloud(batch, n, seed, dtype, *, noncontiguous=False, duplicates=False):
    g = torch.Generator().manual_seed(seed)
    if noncontiguous:  # (B, 3, N) storage seen as (B, N, 3)
        points = torch.randn(batch, 3, n, generator=g).transpose(1, 2)
    else:
        points = torch.randn(batch, n, 3, generator=g)
    if duplicates and n > 1:
        points[:, n // 2 :] = points[:, : n - n // 2].clone()
    return points.to(dtype)


def ragged(batch, low, n, seed):
    lengths = torch.randint(low, n + 1, (batch,), generator=torch.Generator().manual_seed(seed))
    lengths[0] = n
    return lengths


def check_fps(device, path, failures):
    count = 0
    for dtype in DTYPES:
        for i, (batch, n, m) in enumerate(FPS_CASES):
            if path is not None and FPS_PATHS[path] is not None and n > FPS_PATHS[path]:
                continue
            points = cloud(batch, n, seed=n + i, dtype=dtype, noncontiguous=i % 2 == 1, duplicates=i == 2)
            lengths = ragged(batch, m, n, seed=n)
            start = torch.remainder(torch.arange(batch) * 7, lengths)
            with forced("CROSSJEPA_FPS_PATH", path):
                got = ops.farthest_point_sample(points.to(device), m, start.to(device), lengths=lengths.to(device))
                sync(device)
            want = ops.farthest_point_sample_reference(points, m, start, lengths=lengths)
            if not torch.equal(got.cpu(), want):
                failures.append(f"fps path={path} dtype={dtype} B={batch} N={n} M={m}: indices differ")
            count += 1
    return count


def knn_problem(got_sq, got_idx, want_sq, queries, points, lengths):
    """None when (got_sq, got_idx) is a correct kNN answer (ties may order differently), else what is wrong."""
    if not torch.allclose(got_sq, want_sq, rtol=1e-5, atol=1e-6):
        return "distances differ"
    if bool((got_idx < 0).any()) or bool((got_idx >= lengths[:, None, None]).any()):
        return "index outside the cloud"
    if bool((got_idx.sort(-1).values.diff(dim=-1) == 0).any()):
        return "repeated index"
    picked = points.gather(1, got_idx.flatten(1)[..., None].expand(-1, -1, 3)).view(*got_idx.shape, 3)
    if not torch.allclose(squared_distances(queries[:, :, None], picked), got_sq, rtol=1e-5, atol=1e-6):
        return "indices do not match distances"
    return None


def check_knn(device, path, failures):
    count = 0
    for dtype in DTYPES:
        for i, (batch, m, n, k) in enumerate(KNN_CASES):
            max_k, max_n = KNN_PATHS[path] if path is not None else (None, None)
            if (max_k is not None and k > max_k) or (max_n is not None and n > max_n):
                continue
            points = cloud(batch, n, seed=n + i, dtype=dtype, duplicates=i == 2)
            queries = cloud(batch, m, seed=100 + i, dtype=dtype, noncontiguous=i % 2 == 1)
            lengths = ragged(batch, k, n, seed=n)
            with forced("CROSSJEPA_KNN_PATH", path):
                sq, idx = ops.knn(queries.to(device), points.to(device), k, lengths=lengths.to(device))
                sync(device)
            want_sq, _ = ops.knn_reference(queries, points, k, lengths=lengths)
            problem = knn_problem(sq.cpu(), idx.cpu(), want_sq, queries, points, lengths)
            if problem:
                failures.append(f"knn path={path} dtype={dtype} B={batch} M={m} N={n} k={k}: {problem}")
            count += 1
    return count


def check_group(device, path, failures):
    count = 0
    for dtype in DTYPES:
        for i, (batch, m, n, k) in enumerate(GROUP_CASES):
            max_k, max_n = KNN_PATHS[path] if path is not None else (None, None)
            if (max_k is not None and k > max_k) or (max_n is not None and n > max_n):
                continue
            points = cloud(batch, n, seed=n + i, dtype=dtype, noncontiguous=i == 1)
            centers = cloud(batch, m, seed=200 + i, dtype=dtype)
            with forced("CROSSJEPA_KNN_PATH", path):
                out, idx = ops.group(points.to(device), centers.to(device), k)
                sync(device)
            out, idx = out.cpu(), idx.cpu()
            full = torch.full((batch,), n)
            want_sq, _ = ops.knn_reference(centers, points, k)
            picked = points.gather(1, idx.flatten(1)[..., None].expand(-1, -1, 3)).view(batch, m, k, 3)
            got_sq = squared_distances(centers[:, :, None], picked)
            problem = knn_problem(got_sq, idx, want_sq, centers, points, full)
            if problem is None and (out.dtype != dtype or not torch.equal(out, picked - centers[:, :, None])):
                problem = "neighbourhoods differ from points[idx] - centers"
            if problem:
                failures.append(f"group path={path} dtype={dtype} B={batch} M={m} N={n} k={k}: {problem}")
            count += 1
    return count


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (auto: cuda when available)")
    args = parser.parse_args(argv)
    name = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    try:
        device = torch.device(name)
    except RuntimeError:
        print(f"sanitize_ops: --device: expected auto, cpu or cuda, got {args.device!r}", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print("sanitize_ops: --device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    on_gpu = device.type == "cuda"
    print(
        f"sanitize_ops on {device} ({torch.cuda.get_device_name(device) if on_gpu else 'CPU'}); backends: "
        + ", ".join(f"{op}={ops.backend(op, device)}" for op in ("farthest_point_sample", "knn", "group"))
    )
    failures: list[str] = []
    for op, check, paths in (
        ("fps", check_fps, FPS_PATHS),
        ("knn", check_knn, KNN_PATHS),
        ("group", check_group, KNN_PATHS),
    ):
        for path in list(paths) if on_gpu else [None]:
            before = len(failures)
            count = check(device, path, failures)
            status = "ok" if len(failures) == before else f"{len(failures) - before} FAILED"
            print(f"{op:<6} path={path or 'default':<9} {count:>3} cases  {status}")
    for line in failures:
        print(f"FAIL {line}")
    print(f"sanitize_ops: {'all checks passed' if not failures else f'{len(failures)} failures'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
