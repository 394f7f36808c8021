"""CPU point ops against the peers a user would pick, side by side in one run (pytest-benchmark).

    pytest benchmarks/bench_ops_cpu.py --benchmark-json=/tmp/ops_cpu_run.json
    python benchmarks/save_results.py /tmp/ops_cpu_run.json --name ops_cpu

Each group pairs crossjepa ("ours") with a peer ("peer") on the same input and thread count; save_results.py
turns the run into benchmarks/results/<name>.json with the peer/ours speed ratios and the targets below.
"""

import numpy as np
import pytest
import torch

import crossjepa.ops as ops

fpsample = pytest.importorskip("fpsample")

pytestmark = pytest.mark.benchmark(min_rounds=15, max_time=2.0, warmup=True, warmup_iterations=3)


@pytest.fixture
def threads(request):
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


def tag(benchmark, group, role, threads, target=None):
    benchmark.group = group
    benchmark.extra_info.update(role=role, threads=threads)
    if target is not None:
        benchmark.extra_info["target_speedup"] = target


def clouds(*shape, seed=0):
    return torch.randn(*shape, 3, generator=torch.Generator().manual_seed(seed))


# One cloud, 8192 -> 1024, one thread: exact FPS, identical indices.
FPS_ONE = "fps 1x8192->1024, 1 thread"


@pytest.mark.parametrize("threads", [1], indirect=True)
def test_fps_one_cloud_crossjepa(benchmark, threads):
    tag(benchmark, FPS_ONE, "ours", threads, target=2.0)
    points = clouds(1, 8192)
    idx = benchmark(ops.farthest_point_sample, points, 1024, 0)
    assert ops.backend("farthest_point_sample", "cpu") == "cpu"
    assert idx[0].tolist() == fpsample.fps_sampling(points[0].numpy(), 1024, start_idx=0).tolist()


@pytest.mark.parametrize("threads", [1], indirect=True)
def test_fps_one_cloud_fpsample(benchmark, threads):
    tag(benchmark, FPS_ONE, "peer", threads)
    points = clouds(1, 8192)[0].numpy()
    benchmark(fpsample.fps_sampling, points, 1024, 0)


# A batch of 32 clouds, 1024 -> 64, two threads, against a serial loop over fpsample.
FPS_BATCH = "fps 32x1024->64, 2 threads"


@pytest.mark.parametrize("threads", [2], indirect=True)
def test_fps_batch_crossjepa(benchmark, threads):
    tag(benchmark, FPS_BATCH, "ours", threads, target=2.0)
    points = clouds(32, 1024, seed=1)
    idx = benchmark(ops.farthest_point_sample, points, 64, 0)
    expected = np.stack([fpsample.fps_sampling(p, 64, start_idx=0) for p in points.numpy()])
    assert np.array_equal(idx.numpy(), expected)


@pytest.mark.parametrize("threads", [2], indirect=True)
def test_fps_batch_fpsample_loop(benchmark, threads):
    tag(benchmark, FPS_BATCH, "peer", threads)
    points = list(clouds(32, 1024, seed=1).numpy())
    benchmark(lambda: [fpsample.fps_sampling(p, 64, 0) for p in points])


# kNN: 32 clouds x 64 queries over 1024 points, k = 32, two threads.
KNN = "knn 32x64 queries over 1024 points, k=32, 2 threads"


@pytest.mark.parametrize("threads", [2], indirect=True)
def test_knn_crossjepa(benchmark, threads):
    tag(benchmark, KNN, "ours", threads, target=3.0)
    points = clouds(32, 1024, seed=2)
    queries = clouds(32, 64, seed=3)
    d, idx = benchmark(ops.knn, queries, points, 32)
    ref_d, ref_idx = torch.cdist(queries, points).topk(32, largest=False)
    torch.testing.assert_close(d, ref_d.square(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [2], indirect=True)
def test_knn_cdist_topk(benchmark, threads):
    tag(benchmark, KNN, "peer", threads)
    points = clouds(32, 1024, seed=2)
    queries = clouds(32, 64, seed=3)
    benchmark(lambda: torch.cdist(queries, points).topk(32, largest=False))
