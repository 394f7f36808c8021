"""The CPU kernels split over threads (crossjepa::parallel_for): the same results as one thread and the
reference, from concurrent callers, and in a forked child (as in data-loader workers)."""

import multiprocessing
import threading

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

pytestmark = pytest.mark.skipif(backend("knn", "cpu") != "cpu", reason="crossjepa._C not built")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def cloud(batch, n, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n, 3, generator=g).to(dtype)


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def run_ops(points, queries):
    """FPS, kNN and grouping, each large enough to be split over threads."""
    lengths = torch.randint(64, points.shape[1] + 1, (points.shape[0],), generator=torch.Generator().manual_seed(1))
    return (
        farthest_point_sample(points, 64, 3, lengths=lengths),
        knn(queries, points, 24, lengths=lengths),
        group(points, queries, 300)[0],
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3, 16])
def test_split_over_threads_matches_one_thread_and_the_reference(two_threads, batch, dtype):
    points, queries = cloud(batch, 1500, seed=batch, dtype=dtype), cloud(batch, 700, seed=batch + 1, dtype=dtype)
    lengths = torch.randint(64, 1501, (batch,), generator=torch.Generator().manual_seed(1))
    fps, (dist, idx), groups = run_ops(points, queries)
    start = torch.full((batch,), 3)
    assert torch.equal(fps, farthest_point_sample_reference(points, 64, start, lengths=lengths))
    ref_dist, ref_idx = knn_reference(queries, points, 24, lengths=lengths)
    assert torch.equal(idx, ref_idx) and torch.equal(dist, ref_dist)
    assert torch.equal(groups, group_reference(points, queries, 300)[0])
    torch.set_num_threads(1)
    alone_fps, (alone_dist, alone_idx), alone_groups = run_ops(points, queries)
    for got, alone in zip((fps, dist, idx, groups), (alone_fps, alone_dist, alone_idx, alone_groups)):
        assert torch.equal(got, alone)


def test_concurrent_callers_get_their_own_results(two_threads):
    inputs = [(cloud(8, 1024, seed=s), cloud(8, 256, seed=s + 100)) for s in range(4)]
    expected = [knn(q, p, 16) for p, q in inputs]
    results = [None] * len(inputs)

    def call(i):
        p, q = inputs[i]
        results[i] = [knn(q, p, 16) for _ in range(20)]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        for dist, idx in got:
            assert torch.equal(dist, want[0]) and torch.equal(idx, want[1])


def _raw_ops(ext, points, queries):
    """The kernels alone: a forked child must not run torch's own thread pool (libgomp is not fork-safe)."""
    lengths = torch.full((points.shape[0],), points.shape[1], dtype=torch.int64)
    start = torch.zeros(points.shape[0], dtype=torch.int64)
    dist, idx = ext.knn(queries, points, lengths, 300)
    return ext.fps(points, lengths, start, 64), dist, idx, ext.group_gather(points, queries, idx)


def _child(points, queries, conn):
    from crossjepa import _C

    torch.set_num_threads(2)
    conn.send([t.numpy() for t in _raw_ops(_C, points, queries)])
    conn.close()


def test_forked_child_after_the_parent_used_the_pool(two_threads):
    from crossjepa import _C

    points, queries = cloud(16, 1500, seed=5), cloud(16, 700, seed=6)
    expected = _raw_ops(_C, points, queries)  # starts the parent's workers
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(points, queries, send), daemon=True)
    child.start()
    try:
        assert receive.poll(120), "the forked child did not answer"
        got = receive.recv()
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    for a, b in zip(got, expected):
        assert torch.equal(torch.from_numpy(a), b)
