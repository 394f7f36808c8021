"""knn: the compiled kernel against the torch reference and a numpy brute force."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crossjepa.ops import knn, knn_reference
from crossjepa.perf.inputs import query_clouds as clouds

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SIZES = [1, 2, 31, 32, 33, 1000, 4097]


def brute_force(queries, points, k):
    """Sort by (float32 squared distance, index) in numpy, the distance summed left to right like the ops."""
    q = queries.float().numpy()[:, :, None, :]
    p = points.float().numpy()[:, None, :, :]
    diff = q - p
    d = diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1] + diff[..., 2] * diff[..., 2]
    order = np.argsort(d, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(d, order, axis=-1), order


def assert_same(got, expected):
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.int64
    assert torch.equal(got[0], expected[0])
    assert torch.equal(got[1], expected[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_matches_reference(n, dtype):
    queries, points = clouds(2, 17, n, seed=n, dtype=dtype)
    for k in sorted({1, min(n, 7), min(n, 32), min(n, 50), min(n, 100)}):
        assert_same(knn(queries, points, k), knn_reference(queries, points, k))


@pytest.mark.parametrize("n", [33, 1000])
def test_k_equals_n_is_a_full_ordering(n):
    queries, points = clouds(2, 5, n, seed=11)
    d, idx = knn(queries, points, n)
    assert_same((d, idx), knn_reference(queries, points, n))
    assert bool((d[..., 1:] >= d[..., :-1]).all())
    assert torch.equal(idx.sort(dim=-1).values, torch.arange(n).expand(2, 5, n))


def test_queries_on_the_points_find_themselves_first():
    _, points = clouds(3, 1, 300, seed=12)
    d, idx = knn(points, points, 4)
    assert torch.equal(idx[..., 0], torch.arange(300).expand(3, 300))
    assert bool((d[..., 0] == 0).all())


@pytest.mark.parametrize("k", [1, 8, 16, 32, 64, 128])
def test_duplicates_tie_to_the_lower_index(k):
    g = torch.Generator().manual_seed(13)
    points = torch.randint(0, 3, (2, 400, 3), generator=g).float()
    queries = torch.randint(0, 3, (2, 30, 3), generator=g).float()
    d, idx = knn(queries, points, k)
    assert_same((d, idx), knn_reference(queries, points, k))
    same_distance = d[..., 1:] == d[..., :-1]
    assert bool((idx[..., 1:] > idx[..., :-1])[same_distance].all())


@pytest.mark.parametrize("k", [3, 40, 90])
def test_ragged_lengths(k):
    queries, points = clouds(3, 20, 600, seed=14)
    lengths = torch.tensor([600, 97, 250])
    got = knn(queries, points, k, lengths=lengths)
    assert_same(got, knn_reference(queries, points, k, lengths=lengths))
    assert bool((got[1] < lengths[:, None, None]).all())
    assert_same(tuple(t[1:2] for t in got), knn(queries[1:2], points[1:2, :97], k))


def test_non_contiguous_input():
    g = torch.Generator().manual_seed(15)
    queries = torch.randn(2, 3, 40, generator=g).transpose(1, 2)
    points = torch.randn(2, 3, 500, generator=g).transpose(1, 2)
    assert not queries.is_contiguous() and not points.is_contiguous()
    assert_same(knn(queries, points, 10), knn(queries.contiguous(), points.contiguous(), 10))


def test_empty_queries_and_batch():
    queries, points = clouds(2, 0, 50, seed=16)
    assert knn(queries, points, 5)[0].shape == (2, 0, 5)
    queries, points = clouds(0, 4, 50, seed=16)
    assert knn(queries, points, 5)[1].shape == (0, 4, 5)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 200),
    m=st.integers(1, 12),
    frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from(DTYPES),
)
def test_equals_brute_force(n, m, frac, seed, dtype):
    k = max(1, round(frac * n))
    queries, points = clouds(2, m, n, seed, dtype)
    d, idx = knn(queries, points, k)
    bd, bidx = brute_force(queries, points, k)
    np.testing.assert_array_equal(idx.numpy(), bidx)
    np.testing.assert_array_equal(d.numpy(), bd)


@pytest.mark.parametrize("k", [1, 8, 20, 40, 64, 100])
def test_nan_points_without_the_finite_check_still_fill_every_slot(k):
    """Garbage in, garbage out, but never a crash, an index out of range or an unfilled slot."""
    queries, points = clouds(2, 6, 120, seed=17)
    points[:, 5:] = float("nan")  # fewer finite points than k for the larger k
    d, idx = knn(queries, points, k, check_finite=False)
    assert bool(((idx >= 0) & (idx < 120)).all())
    assert all(len(set(row.tolist())) == k for row in idx.reshape(-1, k))
