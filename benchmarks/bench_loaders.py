"""Loader throughput (objects/s): every make_loader backend vs a Point-MAE-style per-file loader, same run.

Data, written once per session: OBJECTS clouds of 8192 points, both as one float32 .npy per object (the
per-file loader's input) and as a packed folder (points.npy fp16 [objects, 8192, 3] + labels.npy, the packed
layout, read through np.load(mmap_mode="r")). Both fit in the page cache and are read once before timing, so
this measures the loaders' CPU cost, not the disk.

- per_file: Point-MAE's ShapeNet loader: __getitem__ does np.load of one file, a random 1024-point subsample
  (a full permutation) and unit-sphere normalisation; DataLoader with default collate.
- torch / device / dali: make_loader over the packed folder, without and with augmentation (random subset,
  rotation, jitter: the same per-point work as per_file's random subsample, and more).
Same batch size and worker count for per_file and torch. One round = one full epoch.

    pytest benchmarks/bench_loaders.py --benchmark-json=benchmarks/results/loaders_cpu.json

(BENCH_LOADER_OBJECTS=2000 by default.) Each entry's extra_info holds objects_per_s and, for the make_loader
backends, ratio_vs_per_file (same run); pytest-benchmark adds the machine, versions and commit.
"""

import os

import numpy as np
import pytest
import torch

from crossjepa.data.loaders import make_loader

OBJECTS = int(os.environ.get("BENCH_LOADER_OBJECTS", "2000"))
STORED, POINTS, BATCH = 8192, 1024, 128
ROUNDS = 5  # epochs timed per loader; objects/s from the median epoch (a shared machine is noisy)
WORKERS = min(4, os.cpu_count() or 1)
RESULTS = {}

VERSIONS = {"torch": torch.__version__, "numpy": np.__version__,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
try:
    import nvidia.dali

    BACKENDS = ("torch", "device", "dali")
    VERSIONS["dali"] = nvidia.dali.__version__
except ImportError:
    BACKENDS = ("torch", "device")


class PerFile(torch.utils.data.Dataset):
    def __init__(self, files, labels):
        self.files, self.labels = files, labels

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        pc = np.load(self.files[i]).astype(np.float32)
        pc = pc[np.random.permutation(pc.shape[0])[:POINTS]]
        pc = pc - pc.mean(axis=0)
        pc = pc / np.sqrt((pc ** 2).sum(axis=1)).max()
        return torch.from_numpy(pc), int(self.labels[i])


class PackedDir:
    """The packed layout's arrays, as the packed reader exposes them."""

    def __init__(self, root):
        self.points_array = np.load(root / "points.npy", mmap_mode="r")
        self.labels_array = np.load(root / "labels.npy")

    def __len__(self):
        return len(self.labels_array)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader_bench")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 55, OBJECTS)
    packed = np.lib.format.open_memmap(root / "points.npy", mode="w+", dtype=np.float16, shape=(OBJECTS, STORED, 3))
    files = []
    for i in range(OBJECTS):
        cloud = rng.normal(size=(STORED, 3)).astype(np.float32)
        cloud /= np.sqrt((cloud ** 2).sum(1)).max()
        files.append(root / f"{i:05d}.npy")
        np.save(files[-1], cloud)
        packed[i] = cloud
    packed.flush()
    del packed
    np.save(root / "labels.npy", labels)
    return files, labels, PackedDir(root)


def _epoch(loader):
    seen = 0
    for batch in loader:
        points = batch["points"] if isinstance(batch, dict) else batch[0]
        seen += points.shape[0]
    assert seen == OBJECTS
    return seen


def _measure(benchmark, name, loader):
    _epoch(loader)  # warm-up: workers started, pipeline built, files in the page cache
    benchmark.pedantic(_epoch, args=(loader,), rounds=ROUNDS, iterations=1)
    RESULTS[name] = OBJECTS / benchmark.stats.stats.median
    benchmark.extra_info.update(loader=name, objects=OBJECTS, stored_points=STORED, num_points=POINTS,
                                batch_size=BATCH, num_workers=WORKERS, objects_per_s=RESULTS[name], **VERSIONS)
    if name != "per_file" and "per_file" in RESULTS:  # per_file runs first in the file
        benchmark.extra_info["ratio_vs_per_file"] = RESULTS[name] / RESULTS["per_file"]


def test_per_file(benchmark, data):
    files, labels, _ = data
    loader = torch.utils.data.DataLoader(PerFile(files, labels), batch_size=BATCH, shuffle=True,
                                         num_workers=WORKERS, persistent_workers=WORKERS > 0)
    _measure(benchmark, "per_file", loader)


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augment"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_packed(benchmark, data, backend, augment):
    extra = {"num_workers": WORKERS} if backend == "torch" else {}
    loader = make_loader(data[2], BATCH, backend=backend, augment=augment, num_points=POINTS, **extra)
    _measure(benchmark, f"{backend}{'_augment' if augment else ''}", loader)


def test_packed_torch_in_process(benchmark, data):
    """The torch backend without workers: the batch gather alone, no inter-process transfer."""
    _measure(benchmark, "torch_no_workers", make_loader(data[2], BATCH, num_points=POINTS, num_workers=0))
