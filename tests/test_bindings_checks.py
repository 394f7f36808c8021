"""Direct calls of crossjepa._C with bad arguments raise (ValueError/TypeError naming the argument) before any
kernel runs; they never read out of bounds. crossjepa.ops validates first, so only direct callers see these."""

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


@pytest.mark.parametrize("lengths, start, num_samples, needle", [
    ([N + 1, N], [0, 0], M, "lengths"),        # past the cloud
    ([0, N], [0, 0], 1, "lengths"),            # empty cloud
    ([N, N], [0, N], M, "start"),              # start == lengths[b]
    ([N, 5], [0, 5], M, "start"),              # start inside the storage but past lengths[b]
    ([N, N], [-1, 0], M, "start"),
    ([N, 3], [0, 0], M, "num_samples"),        # more samples than valid points
    ([N, N], [0, 0], 0, "num_samples"),
    ([N, N], [0, 0], N + 1, "num_samples"),
])
def test_fps_rejects_out_of_range_values(cloud, lengths, start, num_samples, needle):
    points, _ = cloud
    with pytest.raises(ValueError, match=needle):
        C.fps(points, torch.tensor(lengths, device=points.device), torch.tensor(start, device=points.device),
              num_samples)


@pytest.mark.parametrize("lengths, k, needle", [
    ([N + 1, N], 2, "lengths"),
    ([N, 0], 1, "lengths"),
    ([N, 1], 2, "k"),                          # k beyond the shorter cloud
    ([N, N], N + 1, "k"),
    ([N, N], 0, "k"),
])
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
