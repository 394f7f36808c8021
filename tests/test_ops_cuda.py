"""CUDA kernels against the CPU torch reference on the same edge cases as the CPU tests (skipped without a GPU)."""

import pytest
import torch

import crossjepa.ops as ops
from crossjepa.perf.inputs import cloud

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SIZES = [1, 2, 31, 32, 33, 1000, 4097]


def assert_knn_matches(got, expected):
    """Distances equal up to float rounding; indices equal wherever the expected distances are not tied."""
    d, idx = (t.cpu() for t in got)
    ed, eidx = expected
    assert d.dtype == torch.float32 and idx.dtype == torch.int64 and d.shape == ed.shape
    torch.testing.assert_close(d, ed, rtol=1e-5, atol=1e-6)
    near = (ed[..., 1:] - ed[..., :-1]).abs() <= 1e-5 * ed[..., 1:].abs() + 1e-6
    tied = torch.zeros_like(eidx, dtype=torch.bool)
    tied[..., 1:] |= near
    tied[..., :-1] |= near
    assert torch.equal(idx[~tied], eidx[~tied])


def test_backend_is_cuda():
    if ops.backend("knn", "cuda") != "cuda":
        pytest.skip("crossjepa._C was built without CUDA kernels")
    assert all(ops.backend(op, "cuda") == "cuda" for op in ("farthest_point_sample", "knn", "group"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_fps_matches_reference(n, dtype):
    points = cloud(3, n, seed=n, dtype=dtype)
    m = min(n, 64)
    start = torch.tensor([0, n - 1, n // 2])
    got = ops.farthest_point_sample(points.cuda(), m, start.cuda())
    assert got.device.type == "cuda" and got.dtype == torch.int64
    assert torch.equal(got.cpu(), ops.farthest_point_sample_reference(points, m, start))


@pytest.mark.parametrize("n,batch,m", [(1024, 32, 64), (8192, 1, 1024), (20000, 2, 100), (513, 4, 513)])
def test_fps_shapes_of_interest(n, batch, m):
    points = cloud(batch, n, seed=n)
    got = ops.farthest_point_sample(points.cuda(), m, 3)
    assert torch.equal(got.cpu(), ops.farthest_point_sample_reference(points, m, 3))


def test_fps_random_start_with_a_cuda_generator():
    points = cloud(4, 300, seed=1).cuda()
    a = ops.farthest_point_sample(points, 10, "random", generator=torch.Generator("cuda").manual_seed(5))
    b = ops.farthest_point_sample(points, 10, "random", generator=torch.Generator("cuda").manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(a.cpu(), ops.farthest_point_sample_reference(points.cpu(), 10, a[:, 0].cpu()))


def test_fps_duplicates_ragged_and_non_contiguous():
    g = torch.Generator().manual_seed(2)
    dup = torch.randint(0, 3, (2, 200, 3), generator=g).float()
    got = ops.farthest_point_sample(dup.cuda(), 200, 0)
    assert torch.equal(got.cpu(), ops.farthest_point_sample_reference(dup, 200, 0))
    points = cloud(3, 500, seed=3)
    lengths = torch.tensor([500, 37, 200])
    got = ops.farthest_point_sample(points.cuda(), 30, torch.tensor([1, 36, 0]), lengths=lengths.cuda())
    expected = ops.farthest_point_sample_reference(points, 30, torch.tensor([1, 36, 0]), lengths=lengths)
    assert torch.equal(got.cpu(), expected)
    strided = torch.randn(2, 3, 257, generator=g).transpose(1, 2)
    got = ops.farthest_point_sample(strided.cuda(), 40)
    assert torch.equal(got.cpu(), ops.farthest_point_sample_reference(strided, 40))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_knn_matches_reference(n, dtype):
    g = torch.Generator().manual_seed(n)
    queries = torch.randn(2, 65, 3, generator=g).to(dtype)
    points = torch.randn(2, n, 3, generator=g).to(dtype)
    for k in sorted({1, min(n, 7), min(n, 32), min(n, 33), min(n, 64), min(n, 128), n}):
        assert_knn_matches(ops.knn(queries.cuda(), points.cuda(), k), ops.knn_reference(queries, points, k))


def test_knn_duplicates_ragged_and_non_contiguous():
    g = torch.Generator().manual_seed(4)
    points = torch.randint(0, 3, (2, 400, 3), generator=g).float()
    queries = torch.randint(0, 3, (2, 30, 3), generator=g).float()
    for k in (1, 16, 32, 100):
        got = ops.knn(queries.cuda(), points.cuda(), k)
        assert torch.equal(got[1].cpu(), ops.knn_reference(queries, points, k)[1])  # exact ties: lower index
    queries, points = torch.randn(3, 20, 3, generator=g), torch.randn(3, 600, 3, generator=g)
    lengths = torch.tensor([600, 97, 250])
    for k in (3, 32, 90):
        got = ops.knn(queries.cuda(), points.cuda(), k, lengths=lengths.cuda())
        assert_knn_matches(got, ops.knn_reference(queries, points, k, lengths=lengths))
    q = torch.randn(2, 3, 40, generator=g).transpose(1, 2)
    p = torch.randn(2, 3, 500, generator=g).transpose(1, 2)
    assert_knn_matches(ops.knn(q.cuda(), p.cuda(), 10), ops.knn_reference(q, p, 10))


@pytest.mark.parametrize("dtype", DTYPES)
def test_group_matches_reference_with_gradients(dtype):
    base = cloud(2, 1024, seed=5, dtype=dtype)
    centers_base = base[:, ops.farthest_point_sample(base, 64)[0]]
    results = []
    for device in ("cuda", "cpu"):
        points = base.to(device).requires_grad_(True)
        centers = centers_base.to(device).requires_grad_(True)
        fn = ops.group if device == "cuda" else ops.group_reference
        nb, idx = fn(points, centers, 32)
        nb.float().pow(2).sum().backward()
        results.append((nb.detach().cpu(), idx.cpu(), points.grad.cpu(), centers.grad.cpu()))
    (nb, idx, gp, gc), (rnb, ridx, rgp, rgc) = results
    assert nb.dtype == dtype and torch.equal(idx, ridx)
    tol = {} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    for a, b in ((nb, rnb), (gp, rgp), (gc, rgc)):
        torch.testing.assert_close(a.float(), b.float(), **tol)


def test_cuda_inputs_are_validated():
    points = cloud(2, 50, seed=6).cuda()
    with pytest.raises(ValueError, match="queries"):
        ops.knn(torch.randn(2, 4, 3), points, 3)
    with pytest.raises(ValueError, match="start_index"):
        ops.farthest_point_sample(points, 3, torch.tensor([0, 50]).cuda())
    bad = points.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="points"):
        ops.farthest_point_sample(bad, 3)
