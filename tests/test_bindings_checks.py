"""Direct calls of crossjepa._C with bad arguments raise (ValueError/TypeError naming the argument) before any
kernel runs; they never read out of bounds. crossjepa.ops validates first, so only direct callers see these.
check_values=False (what crossjepa.ops passes) skips only the checks of values, a host sync each on CUDA."""

from __future__ import annotations

import pytest
import torch

from crossjepa.ops import dispatch

C = dispatch._load_extension()[0]
pytestmark = pytest.mark.skipif(C is None, reason="crossjepa._C not built")

B, N, M = 2, 16, 4


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not (torch.cuda.is_available() and C.with_cuda()):
        pytest.skip("needs a GPU and crossjepa._C built with CUDA")
    return torch.device(request.param)


@pytest.fixture
def cloud(device):
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, N, 3, generator=g).to(device), torch.randn(B, M, 3, generator=g).to(device)


def _full(value, device):
    return torch.full((B,), value, dtype=torch.int64, device=device)


def test_valid_calls_still_work(cloud):
    points, queries = cloud
    d = points.device
    assert C.fps(points, _full(N, d), _full(0, d), M).shape == (B, M)
    _, idx = C.knn(queries, points, _full(N, d), 3)
    assert C.group_gather(points, queries, idx).shape == (B, M, 3, 3)


@pytest.mark.parametrize(
    "lengths, start, num_samples, needle",
    [
        ([N + 1, N], [0, 0], M, "lengths"),  # past the cloud
        ([0, N], [0, 0], 1, "lengths"),  # empty cloud
        ([N, N], [0, N], M, "start"),  # start == lengths[b]
        ([N, 5], [0, 5], M, "start"),  # start inside the storage but past lengths[b]
        ([N, N], [-1, 0], M, "start"),
        ([N, 3], [0, 0], M, "num_samples"),  # more samples than valid points
        ([N, N], [0, 0], 0, "num_samples"),
        ([N, N], [0, 0], N + 1, "num_samples"),
    ],
)
def test_fps_rejects_out_of_range_values(cloud, lengths, start, num_samples, needle):
    points, _ = cloud
    with pytest.raises(ValueError, match=needle):
        C.fps(
            points, torch.tensor(lengths, device=points.device), torch.tensor(start, device=points.device), num_samples
        )


@pytest.mark.parametrize(
    "lengths, k, needle",
    [
        ([N + 1, N], 2, "lengths"),
        ([N, 0], 1, "lengths"),
        ([N, 1], 2, "k"),  # k beyond the shorter cloud
        ([N, N], N + 1, "k"),
        ([N, N], 0, "k"),
    ],
)
def test_knn_rejects_out_of_range_values(cloud, lengths, k, needle):
    points, queries = cloud
    with pytest.raises(ValueError, match=needle):
        C.knn(queries, points, torch.tensor(lengths, device=points.device), k)


@pytest.mark.parametrize("bad", [N, -1, 10**9])
def test_group_gather_rejects_out_of_range_indices(cloud, bad):
    points, centers = cloud
    idx = torch.zeros(B, M, 3, dtype=torch.int64, device=points.device)
    idx[1, 2, 1] = bad
    with pytest.raises(ValueError, match="idx"):
        C.group_gather(points, centers, idx)


def test_shapes_dtypes_and_devices_are_checked(cloud):
    points, queries = cloud
    d = points.device
    with pytest.raises(TypeError, match="lengths"):
        C.fps(points, _full(N, d).int(), _full(0, d), M)
    with pytest.raises(ValueError, match="start"):
        C.fps(points, _full(N, d), torch.zeros(B + 1, dtype=torch.int64, device=d), M)
    with pytest.raises(ValueError, match="points"):
        C.fps(points[..., :2], _full(N, d), _full(0, d), M)
    with pytest.raises(TypeError, match="queries"):
        C.knn(queries.double(), points, _full(N, d), 2)
    with pytest.raises(ValueError, match="queries"):
        C.knn(queries[:1], points, _full(N, d), 2)
    with pytest.raises(TypeError, match="idx"):
        C.group_gather(points, queries, torch.zeros(B, M, 3, dtype=torch.int32, device=d))
    with pytest.raises(ValueError, match="idx"):
        C.group_gather(points, queries, torch.zeros(B, M + 1, 3, dtype=torch.int64, device=d))


def test_check_values_false_skips_only_the_value_checks(cloud):
    points, queries = cloud
    d = points.device
    lengths, start = _full(N, d), _full(0, d)
    before = C.value_check_count()
    idx = C.fps(points, lengths, start, M, check_values=False)
    sq, nn = C.knn(queries, points, lengths, 3, check_values=False)
    groups = C.group_gather(points, queries, nn, check_values=False)
    assert C.value_check_count() == before
    assert torch.equal(idx, C.fps(points, lengths, start, M))
    assert all(torch.equal(a, b) for a, b in zip((sq, nn), C.knn(queries, points, lengths, 3)))
    assert torch.equal(groups, C.group_gather(points, queries, nn))
    assert C.value_check_count() == before + 3
    # Shapes, dtypes, devices and the bounds that need no tensor values are still checked.
    with pytest.raises(TypeError, match="lengths"):
        C.fps(points, lengths.int(), start, M, check_values=False)
    with pytest.raises(ValueError, match="num_samples"):
        C.fps(points, lengths, start, N + 1, check_values=False)
    with pytest.raises(ValueError, match="k must be"):
        C.knn(queries, points, lengths, N + 1, check_values=False)
    with pytest.raises(ValueError, match="idx"):
        C.group_gather(points, queries, torch.zeros(B, M + 1, 3, dtype=torch.int64, device=d), check_values=False)
    with pytest.raises(TypeError):  # keyword-only: a stray positional argument is not taken for it
        C.fps(points, lengths, start, M, False)


def test_check_values_false_makes_no_host_sync(cloud):
    points, queries = cloud
    if points.device.type != "cuda":
        pytest.skip("a host sync exists only on CUDA")
    d = points.device
    lengths, start = _full(N, d), _full(0, d)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        C.fps(points, lengths, start, M, check_values=False)
        _, nn = C.knn(queries, points, lengths, 3, check_values=False)
        C.group_gather(points, queries, nn, check_values=False)
        with pytest.raises(RuntimeError, match="synchroniz"):  # control: the value check does sync
            C.fps(points, lengths, start, M)
    finally:
        torch.cuda.set_sync_debug_mode("default")
