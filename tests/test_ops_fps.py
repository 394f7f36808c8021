"""farthest_point_sample: the compiled kernel against the torch reference, fpsample, and FPS properties."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crossjepa.ops import backend, farthest_point_sample, farthest_point_sample_reference
from crossjepa.ops.reference import squared_distances
from crossjepa.perf.inputs import cloud

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SIZES = [1, 2, 31, 32, 33, 1000, 4097]
HAVE_KERNEL = backend("farthest_point_sample", "cpu") == "cpu"


def coverage_radii(points, idx):
    """Squared distance from each picked point to the points picked before it (the FPS coverage radius)."""
    picked = points.float()[idx]
    d = squared_distances(picked[:, None, :], picked[None, :, :])
    return torch.stack([d[i, :i].min() for i in range(1, len(idx))]) if len(idx) > 1 else torch.empty(0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_matches_reference(n, dtype):
    points = cloud(3, n, seed=n, dtype=dtype)
    m = min(n, 48)
    start = torch.tensor([0, n - 1, n // 2])
    got = farthest_point_sample(points, m, start)
    assert got.dtype == torch.int64 and got.shape == (3, m)
    assert torch.equal(got, farthest_point_sample_reference(points, m, start))
    assert torch.equal(got[:, 0], start)


@pytest.mark.parametrize("start", [0, 5, "tensor"])
def test_start_index_forms(start):
    points = cloud(4, 100, seed=1)
    if start == "tensor":
        start = torch.tensor([3, 99, 0, 42])
    got = farthest_point_sample(points, 20, start)
    expected_first = start if isinstance(start, torch.Tensor) else torch.full((4,), start)
    assert torch.equal(got[:, 0], expected_first)
    assert torch.equal(got, farthest_point_sample_reference(points, 20, start))


def test_random_start_is_reproducible_with_a_generator():
    points = cloud(5, 300, seed=2)
    a = farthest_point_sample(points, 16, "random", generator=torch.Generator().manual_seed(7))
    b = farthest_point_sample(points, 16, "random", generator=torch.Generator().manual_seed(7))
    ref = farthest_point_sample_reference(points, 16, "random", generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and torch.equal(a, ref)
    starts = {tuple(farthest_point_sample(points, 1, "random").flatten().tolist()) for _ in range(5)}
    assert len(starts) > 1  # the default generator actually draws


def test_duplicate_points_give_unique_indices():
    g = torch.Generator().manual_seed(3)
    points = torch.randint(0, 3, (2, 200, 3), generator=g).float()  # at most 27 distinct positions
    got = farthest_point_sample(points, 200, 0)
    assert torch.equal(got, farthest_point_sample_reference(points, 200, 0))
    for row in got:
        assert torch.equal(row.sort().values, torch.arange(200))


def test_all_points_equal_picks_in_index_order():
    points = torch.ones(1, 10, 3) * 0.25
    assert farthest_point_sample(points, 10, 4).tolist() == [[4, 0, 1, 2, 3, 5, 6, 7, 8, 9]]


def test_ragged_lengths():
    points = cloud(3, 500, seed=4)
    lengths = torch.tensor([500, 37, 200])
    got = farthest_point_sample(points, 30, torch.tensor([1, 36, 0]), lengths=lengths)
    assert torch.equal(got, farthest_point_sample_reference(points, 30, torch.tensor([1, 36, 0]), lengths=lengths))
    assert bool((got < lengths[:, None]).all())
    alone = farthest_point_sample(points[1:2, :37], 30, 36)
    assert torch.equal(got[1:2], alone)


def test_non_contiguous_input():
    base = torch.randn(2, 3, 257, generator=torch.Generator().manual_seed(5))
    points = base.transpose(1, 2)  # (2, 257, 3), not contiguous
    assert not points.is_contiguous()
    assert torch.equal(farthest_point_sample(points, 40), farthest_point_sample(points.contiguous(), 40))


def test_empty_batch():
    assert farthest_point_sample(torch.randn(0, 10, 3), 4).shape == (0, 4)


def test_check_finite_off_gives_the_same_result():
    points = cloud(2, 64, seed=6)
    assert torch.equal(farthest_point_sample(points, 8, check_finite=False), farthest_point_sample(points, 8))


@pytest.mark.skipif(not HAVE_KERNEL, reason="crossjepa._C not built")
@pytest.mark.parametrize("threads", [1, 2])
def test_large_single_cloud_split_over_threads(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        points = cloud(1, 20000, seed=8)
        got = farthest_point_sample(points, 64, 123)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(got, farthest_point_sample_reference(points, 64, 123))


def test_identical_to_fpsample():
    fpsample = pytest.importorskip("fpsample")
    points = cloud(3, 2000, seed=9)
    got = farthest_point_sample(points, 128, 0)
    for b in range(3):
        expected = fpsample.fps_sampling(points[b].numpy(), 128, start_idx=0)
        assert got[b].tolist() == expected.tolist()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 80),
    frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from(DTYPES),
    duplicates=st.booleans(),
)
def test_properties(n, frac, seed, dtype, duplicates):
    m = max(1, round(frac * n))
    points = cloud(1, n, seed, dtype)
    if duplicates:
        points = points.round()  # coarse grid: many exact ties
    start = seed % n
    idx = farthest_point_sample(points, m, start)[0]
    assert idx[0].item() == start
    assert bool(((idx >= 0) & (idx < n)).all())
    assert len(set(idx.tolist())) == m
    radii = coverage_radii(points[0], idx)
    assert bool((radii[1:] <= radii[:-1]).all())
