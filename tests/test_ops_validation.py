"""Every bad input to the point ops gets a one-line ValueError/TypeError naming the argument."""

import pytest
import torch

from crossjepa.ops import (
    backend,
    farthest_point_sample,
    farthest_point_sample_reference,
    group,
    group_reference,
    knn,
    knn_reference,
)

FPS = [farthest_point_sample, farthest_point_sample_reference]
KNN = [knn, knn_reference]
GROUP = [group, group_reference]


def pts(batch=2, n=20, seed=0, dtype=torch.float32):
    return torch.randn(batch, n, 3, generator=torch.Generator().manual_seed(seed)).to(dtype)


def check(exc_type, name, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert name in message and "\n" not in message, message


BAD_CLOUDS = [
    (TypeError, [[0.0, 0.0, 0.0]]),
    (TypeError, torch.zeros(2, 5, 3, dtype=torch.float64)),
    (TypeError, torch.zeros(2, 5, 3, dtype=torch.int64)),
    (ValueError, torch.zeros(5, 3)),
    (ValueError, torch.zeros(2, 5, 2)),
    (ValueError, torch.zeros(2, 0, 3)),
]


@pytest.mark.parametrize("fn", FPS)
@pytest.mark.parametrize("exc_type,points", BAD_CLOUDS)
def test_fps_bad_points(fn, exc_type, points):
    check(exc_type, "points", fn, points, 1)


@pytest.mark.parametrize("fn", FPS)
@pytest.mark.parametrize(
    "exc_type,num_samples", [(ValueError, 0), (ValueError, 21), (ValueError, -3), (TypeError, 2.0), (TypeError, True)]
)
def test_fps_bad_num_samples(fn, exc_type, num_samples):
    check(exc_type, "num_samples", fn, pts(), num_samples)


@pytest.mark.parametrize("fn", FPS)
@pytest.mark.parametrize(
    "exc_type,start",
    [
        (ValueError, -1),
        (ValueError, 20),
        (ValueError, "first"),
        (TypeError, 1.5),
        (TypeError, None),
        (TypeError, torch.tensor([0.0, 1.0])),
        (ValueError, torch.tensor([0, 1, 2])),
        (ValueError, torch.tensor([0, 20])),
        (ValueError, torch.tensor([-1, 0])),
    ],
)
def test_fps_bad_start_index(fn, exc_type, start):
    check(exc_type, "start_index", fn, pts(), 4, start)


@pytest.mark.parametrize("fn", FPS)
def test_fps_bad_generator(fn):
    check(TypeError, "generator", fn, pts(), 4, "random", generator=123)


@pytest.mark.parametrize("fn", FPS)
@pytest.mark.parametrize(
    "exc_type,lengths",
    [
        (TypeError, [20, 20]),
        (TypeError, torch.tensor([20.0, 20.0])),
        (ValueError, torch.tensor([20, 20, 20])),
        (ValueError, torch.tensor([0, 20])),
        (ValueError, torch.tensor([21, 20])),
    ],
)
def test_fps_bad_lengths(fn, exc_type, lengths):
    check(exc_type, "lengths", fn, pts(), 4, lengths=lengths)


@pytest.mark.parametrize("fn", FPS)
def test_fps_ragged_limits(fn):
    lengths = torch.tensor([20, 6])
    check(ValueError, "num_samples", fn, pts(), 7, lengths=lengths)
    check(ValueError, "start_index", fn, pts(), 3, 6, lengths=lengths)
    check(ValueError, "start_index", fn, pts(), 3, torch.tensor([0, 6]), lengths=lengths)


@pytest.mark.parametrize("fn", FPS + KNN + GROUP)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_points(fn, bad):
    points = pts()
    points[1, 3, 2] = bad
    args = (points, 2) if fn in FPS else (points[:, :4].clone().nan_to_num(), points, 2)
    if fn in GROUP:
        args = (points, points[:, :4].clone().nan_to_num(), 2)
    check(ValueError, "points", fn, *args)


@pytest.mark.parametrize("fn", KNN + GROUP)
def test_non_finite_queries_and_centers(fn):
    points = pts()
    queries = pts(n=4, seed=1)
    queries[0, 1, 0] = float("nan")
    name = "queries" if fn in KNN else "centers"
    check(ValueError, name, fn, *((queries, points, 2) if fn in KNN else (points, queries, 2)))


@pytest.mark.parametrize("fn", FPS + KNN)
def test_check_finite_off_skips_the_scan_without_crashing(fn):
    points = pts(n=50)
    points[0, :10] = float("nan")
    if fn in FPS:
        idx = fn(points, 10, check_finite=False)
    else:
        idx = fn(points[:, :5], points, 10, check_finite=False)[1]
    assert bool(((idx >= 0) & (idx < 50)).all())


@pytest.mark.parametrize("fn", KNN)
@pytest.mark.parametrize("exc_type,points", BAD_CLOUDS)
def test_knn_bad_points(fn, exc_type, points):
    check(exc_type, "points", fn, pts(n=3), points, 1)


@pytest.mark.parametrize("fn", KNN)
@pytest.mark.parametrize(
    "exc_type,queries",
    [
        (TypeError, "queries"),
        (ValueError, torch.zeros(2, 4)),
        (ValueError, torch.zeros(2, 4, 4)),
        (ValueError, torch.zeros(3, 4, 3)),
        (TypeError, torch.zeros(2, 4, 3, dtype=torch.float16)),
        (ValueError, torch.zeros(2, 4, 3, device="meta")),
    ],
)
def test_knn_bad_queries(fn, exc_type, queries):
    check(exc_type, "queries", fn, queries, pts(), 1)


@pytest.mark.parametrize("fn", KNN)
@pytest.mark.parametrize("exc_type,k", [(ValueError, 0), (ValueError, 21), (TypeError, 3.0), (TypeError, None)])
def test_knn_bad_k(fn, exc_type, k):
    check(exc_type, "k", fn, pts(n=4), pts(), k)


@pytest.mark.parametrize("fn", KNN)
def test_knn_bad_lengths(fn):
    check(ValueError, "lengths", fn, pts(n=4), pts(), 2, lengths=torch.tensor([20, 0]))
    check(ValueError, "k", fn, pts(n=4), pts(), 6, lengths=torch.tensor([20, 5]))
    check(ValueError, "lengths", fn, pts(n=4), pts(), 2, lengths=torch.tensor([[20, 20]]))


@pytest.mark.parametrize("fn", GROUP)
@pytest.mark.parametrize("exc_type,points", BAD_CLOUDS)
def test_group_bad_points(fn, exc_type, points):
    check(exc_type, "points", fn, points, pts(n=3), 1)


@pytest.mark.parametrize("fn", GROUP)
@pytest.mark.parametrize(
    "exc_type,centers",
    [
        (TypeError, None),
        (ValueError, torch.zeros(2, 3)),
        (ValueError, torch.zeros(1, 3, 3)),
        (TypeError, torch.zeros(2, 3, 3, dtype=torch.bfloat16)),
    ],
)
def test_group_bad_centers(fn, exc_type, centers):
    check(exc_type, "centers", fn, pts(), centers, 1)


@pytest.mark.parametrize("fn", GROUP)
@pytest.mark.parametrize("exc_type,k", [(ValueError, 0), (ValueError, 21), (TypeError, "4")])
def test_group_bad_k(fn, exc_type, k):
    check(exc_type, "k", fn, pts(), pts(n=3), k)


def test_backend_bad_arguments():
    check(ValueError, "op_name", backend, "sort", "cpu")
    check(ValueError, "device", backend, "knn", "not-a-device")
    check(ValueError, "device", backend, "knn", 3.5)
