"""make_loader: backend equality, determinism, augmentation geometry, sizes and errors (CPU; DALI CPU pipeline)."""

import pickle
import sys

import numpy as np
import pytest
import torch

from crossjepa.data import make_loader
from crossjepa.data.loaders import _ArrayHandle, epoch_order
from crossjepa.data.transforms import AugmentConfig, augment, random_rotation, rotate_poses

try:
    import nvidia.dali  # noqa: F401  (the dali-cuda13 extra; CI installs it)

    BACKENDS = ("torch", "device", "dali")
except ImportError:
    BACKENDS = ("torch", "device")
needs_dali = pytest.mark.skipif("dali" not in BACKENDS, reason="NVIDIA DALI not installed")

N_STORED = 96


class PackedLike:
    """Follows the packed reader's protocol: fp16 memmap `points_array`, `labels_array`, ds[i]."""

    def __init__(self, path, num_objects=37, num_stored=N_STORED, seed=0):
        rng = np.random.default_rng(seed)
        np.save(path, rng.uniform(-1, 1, (num_objects, num_stored, 3)).astype(np.float16))
        self.points_array = np.load(path, mmap_mode="r")
        self.labels_array = rng.integers(0, 10, num_objects).astype(np.int64)

    def __len__(self):
        return len(self.labels_array)

    def __getitem__(self, i):
        return {"points": torch.from_numpy(self.points_array[i].astype(np.float32)), "label": int(self.labels_array[i])}


class Items:
    """A dataset known only through len and ds[i] (clouds may differ in size)."""

    def __init__(self, sizes, seed=1):
        rng = np.random.default_rng(seed)
        self.clouds = [rng.normal(size=(n, 3)).astype(np.float32) for n in sizes]
        self.labels = rng.integers(0, 5, len(sizes))

    def __len__(self):
        return len(self.clouds)

    def __getitem__(self, i):
        return {"points": torch.from_numpy(self.clouds[i]), "label": int(self.labels[i])}


@pytest.fixture
def packed(tmp_path):
    return PackedLike(tmp_path / "points.npy")


def epochs(loader, count=2):
    return [list(loader) for _ in range(count)]


def assert_same_batches(a, b, exact=True):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() == {"points", "label", "index", "rotation"}
        for k in x:
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, k
            if exact or k != "points":
                assert torch.equal(x[k], y[k]), k
            else:
                torch.testing.assert_close(x[k], y[k], atol=1e-6, rtol=0)


def backend_options(backend):
    return {"num_workers": 0} if backend == "torch" else {"device": "cpu"}


def loaders(dataset, **kw):
    return {b: make_loader(dataset, backend=b, **backend_options(b), **kw) for b in BACKENDS}


def assert_backends_agree(out, e=None):
    for name in out:
        a, b = out["torch"], out[name]
        pairs = [(a, b)] if e is None else [(a[e], b[e])]
        for x, y in pairs:
            assert_same_batches(x, y, exact=name != "dali")


@pytest.mark.parametrize("shuffle", [False, True])
def test_backends_yield_the_same_batches(packed, shuffle):
    kw = dict(batch_size=8, shuffle=shuffle, num_points=64, seed=5)
    out = {name: epochs(loader) for name, loader in loaders(packed, **kw).items()}
    for e in range(2):
        for name in out:
            assert_same_batches(out["torch"][e], out[name][e])
        for batch in out["torch"][e]:  # no augmentation: the stored prefix, identity rotation
            idx = batch["index"].numpy()
            assert torch.equal(batch["points"], torch.from_numpy(packed.points_array[idx, :64].astype(np.float32)))
            assert torch.equal(batch["label"], torch.from_numpy(packed.labels_array[idx]))
            assert torch.equal(batch["rotation"], torch.eye(3).expand(len(idx), 3, 3))
            assert batch["points"].dtype == torch.float32 and batch["label"].dtype == torch.int64


def test_backends_agree_with_augmentation_and_workers(packed):
    kw = dict(batch_size=8, num_points=48, seed=2, augment=True)
    out = {name: epochs(loader) for name, loader in loaders(packed, **kw).items()}
    out["workers"] = epochs(make_loader(packed, backend="torch", num_workers=2, **kw))
    for e in range(2):
        assert_backends_agree(out, e)
    assert not torch.equal(out["torch"][0][0]["rotation"], out["torch"][1][0]["rotation"])


def test_items_dataset_matches_packed_path(tmp_path):
    ds = Items([N_STORED] * 21)
    kw = dict(batch_size=5, num_points=40, seed=1)
    for aug in (False, True):
        out = {name: epochs(loader, 1)[0] for name, loader in loaders(ds, augment=aug, **kw).items()}
        assert_backends_agree(out)


def test_real_packed_and_synthetic_datasets(tmp_path):
    from crossjepa.data import PackedDataset, SyntheticShapes, pack

    synthetic = SyntheticShapes(12, num_points=300, seed=0)
    packed = PackedDataset(pack(synthetic, tmp_path / "packed", num_points=200, progress=False))
    for ds, n in ((packed, 128), (synthetic, 300)):
        out = {name: epochs(loader, 1)[0] for name, loader in loaders(ds, batch_size=5, num_points=n).items()}
        assert_backends_agree(out)
        for batch in out["torch"]:
            expected = torch.stack([ds[int(i)]["points"][:n] for i in batch["index"]])
            assert torch.equal(batch["points"], expected)
            assert batch["label"].tolist() == [ds[int(i)]["label"] for i in batch["index"]]


def test_ragged_items_need_the_torch_backend():
    ds = Items([50, 70, 64, 90, 55])
    for aug in (False, True):
        batches = list(make_loader(ds, 2, num_points=32, augment=aug, num_workers=0))
        assert [b["points"].shape for b in batches] == [(2, 32, 3), (2, 32, 3), (1, 32, 3)]
    first = next(iter(make_loader(ds, 2, num_points=32, shuffle=False, num_workers=0)))
    assert torch.equal(first["points"][1], torch.from_numpy(ds.clouds[1][:32]))
    with pytest.raises(ValueError, match="dataset: backend 'device' needs clouds of one shape"):
        make_loader(ds, 2, backend="device", num_points=32)
    with pytest.raises(ValueError, match=r"dataset\[\d\]: expected points"):
        list(make_loader(ds, 2, num_points=60, num_workers=0))


def test_shuffle_is_deterministic_per_seed(packed):
    def orders(seed):
        loader = make_loader(packed, 8, backend="device", device="cpu", num_points=16, seed=seed)
        return [torch.cat([b["index"] for b in batches]) for batches in epochs(loader, 3)]

    a, b, c = orders(3), orders(3), orders(4)
    for e in range(3):
        assert torch.equal(a[e], b[e])
        assert torch.equal(a[e], torch.randperm(37, generator=torch.Generator().manual_seed(3 + e)))
        assert torch.equal(a[e].sort().values, torch.arange(37))
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], c[0])
    assert torch.equal(epoch_order(37, False, 3, 1), torch.arange(37))


def test_set_epoch_and_unfinished_epochs(packed):
    expected = epochs(make_loader(packed, 8, num_points=16, augment=True, num_workers=0), 4)
    for backend in BACKENDS:
        loader = make_loader(packed, 8, backend=backend, num_points=16, augment=True, **backend_options(backend))
        it = iter(loader)
        next(it)  # leave epoch 0 unfinished
        assert_same_batches(list(loader), expected[1], exact=backend != "dali")
        loader.set_epoch(3)
        assert_same_batches(list(loader), expected[3], exact=backend != "dali")
    with pytest.raises(ValueError, match="epoch: expected an int >= 0"):
        loader.set_epoch(-1)


def exact_cdist(a, b):
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def test_augmentation_rotates_a_subset_of_the_cloud(packed):
    cfg = AugmentConfig(jitter_sigma=0.0)
    for batch in make_loader(packed, 8, backend="device", device="cpu", num_points=32, augment=cfg):
        r = batch["rotation"]
        assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand_as(r), atol=1e-6)
        assert torch.allclose(torch.linalg.det(r), torch.ones(len(r)), atol=1e-6)
        assert torch.allclose(r[:, 1], torch.tensor([0.0, 1.0, 0.0]).expand(len(r), 3))  # about the up axis (y)
        unrotated = batch["points"] @ r  # points_aug = subset @ R.T
        stored = torch.from_numpy(packed.points_array[batch["index"].numpy()].astype(np.float32))
        dist, nearest = exact_cdist(unrotated, stored).min(dim=2)
        assert dist.max() < 1e-5
        assert all(len(set(row.tolist())) == 32 for row in nearest)  # distinct points: a subset
    jittered = next(iter(make_loader(packed, 8, backend="device", device="cpu", num_points=32, augment=True)))
    stored = torch.from_numpy(packed.points_array[jittered["index"].numpy()].astype(np.float32))
    dist = exact_cdist(jittered["points"] @ jittered["rotation"], stored).min(dim=2).values
    assert 0 < dist.max() <= 0.05 * 3**0.5 + 1e-6


def test_transforms_geometry():
    points = torch.randn(4, 50, 3)
    g = torch.Generator().manual_seed(7)
    out, r = augment(points, g, AugmentConfig(rotation="so3", jitter_sigma=0.0))
    torch.testing.assert_close(out, points @ r.transpose(1, 2))
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-6, rtol=0)
    again, r2 = augment(points, torch.Generator().manual_seed(7), AugmentConfig(rotation="so3", jitter_sigma=0.0))
    assert torch.equal(again, out) and torch.equal(r2, r)
    cfg = AugmentConfig(scale=(0.5, 2.0), translate=0.2, jitter_sigma=0.0)
    scaled, r3 = augment(points, torch.Generator().manual_seed(8), cfg)
    centred = scaled - scaled.mean(1, keepdim=True)
    ratio = (centred @ r3).std(1) / (points - points.mean(1, keepdim=True)).std(1)  # per-axis scale
    assert ((ratio > 0.5 - 1e-4) & (ratio < 2.0 + 1e-4)).all() and ratio.std() > 0.01
    x_axis = random_rotation(3, torch.Generator().manual_seed(1), "up", up_axis=0)
    assert torch.allclose(x_axis[:, 0], torch.tensor([1.0, 0.0, 0.0]).expand(3, 3))
    with pytest.raises(ValueError, match="rotation: expected one of"):
        AugmentConfig(rotation="z")
    with pytest.raises(ValueError, match="scale: expected None or"):
        AugmentConfig(scale=(2.0, 1.0))


def test_rotated_cameras_see_rotated_points_unchanged():
    from crossjepa.render.cameras import sphere_poses, world_to_camera

    points = torch.randn(3, 40, 3)
    r = random_rotation(3, torch.Generator().manual_seed(2), "so3")
    poses = sphere_poses(4)
    before = world_to_camera(points, poses)
    after = world_to_camera(points @ r.transpose(1, 2), rotate_poses(poses, r))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_len_and_drop_last(packed, backend):
    extra = backend_options(backend)
    for drop_last, sizes in ((False, [8, 8, 8, 8, 5]), (True, [8, 8, 8, 8])):
        loader = make_loader(packed, 8, backend=backend, num_points=16, drop_last=drop_last, **extra)
        assert len(loader) == len(sizes)
        assert [len(b["index"]) for b in loader] == sizes
    assert len(make_loader(packed, 64, backend=backend, num_points=16, drop_last=True, **extra)) == 0


def test_distributed_shards_cover_the_epoch(packed):
    shards = [
        make_loader(packed, 4, backend="device", device="cpu", num_points=8, rank=r, world_size=3) for r in range(3)
    ]
    assert len({len(s) for s in shards}) == 1
    seen = torch.cat([b["index"] for s in shards for b in s])
    assert len(seen) == 39 and set(seen.tolist()) == set(range(37))


@needs_dali
def test_dali_gathers_across_shards(packed):
    from crossjepa.data.dali_loader import DaliLoader

    reference = make_loader(packed, 8, backend="device", device="cpu", num_points=64, augment=True, seed=4)
    sharded = make_loader(packed, 8, backend="dali", device="cpu", num_points=64, augment=True, seed=4)
    sharded = DaliLoader(packed, sharded.plan, 64, sharded.augment, 4, "cpu", rows_per_shard=5 * N_STORED)
    assert len(sharded._feeder.shards) == 8
    assert_same_batches(list(reference), list(sharded), exact=False)


def test_memmap_crosses_to_workers_by_path(packed):
    blob = pickle.dumps(_ArrayHandle(packed.points_array))
    assert len(blob) < 1000
    assert np.array_equal(pickle.loads(blob).array, packed.points_array)


def test_bad_arguments(packed, monkeypatch):
    with pytest.raises(ValueError, match="backend: expected one of"):
        make_loader(packed, 8, backend="jax")
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        make_loader(packed, 0)
    with pytest.raises(TypeError, match="batch_size: expected a positive int, got 2.5"):
        make_loader(packed, 2.5)
    with pytest.raises(ValueError, match=r"num_points: expected an int in \[1, 96\] \(points stored per object\)"):
        make_loader(packed, 8, num_points=200)
    with pytest.raises(TypeError, match="augment: expected a bool or an AugmentConfig"):
        make_loader(packed, 8, augment="yes")
    with pytest.raises(ValueError, match="dataset: expected at least one object"):
        make_loader(Items([]), 8)
    with pytest.raises(ValueError, match=r"rank: expected an int in \[0, 1\], got 2"):
        make_loader(packed, 8, rank=2, world_size=2)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(ImportError, match="backend 'dali' needs NVIDIA DALI"):
        make_loader(packed, 8, backend="dali", num_points=16)


class IndexTargets:
    """Picklable targets: a tensor derived from (seed, rank, epoch, batch) and the index, to check what reaches
    every batch."""

    def read(self, key, index):
        seed, rank, epoch, batch = key
        return {"tag": torch.from_numpy(index * 1000 + epoch * 100 + batch + seed * 10000 + rank * 100000)}


def test_targets_are_read_from_the_host_index_on_every_backend(packed):
    kw = dict(batch_size=8, num_points=32, seed=3, augment=True, targets=IndexTargets())
    out = {name: epochs(loader) for name, loader in loaders(packed, **kw).items()}
    out["workers"] = epochs(make_loader(packed, backend="torch", num_workers=1, **kw))
    for name, runs in out.items():
        for epoch, batches in enumerate(runs):
            assert len(batches) == 5, name
            for b, batch in enumerate(batches):
                assert torch.equal(batch["tag"], batch["index"] * 1000 + epoch * 100 + b + 30000), name
    resumed = make_loader(packed, backend="device", device="cpu", **kw)
    resumed.set_epoch(1, first_batch=2)  # numbered as in the whole epoch
    assert [torch.equal(x["tag"], y["tag"]) for x, y in zip(list(resumed), out["device"][1][2:])] == [True] * 3
    for backend in ("torch", "device"):  # the key carries this process's rank
        for b, batch in enumerate(make_loader(packed, backend=backend, device="cpu", rank=1, world_size=2, **kw)):
            assert torch.equal(batch["tag"], batch["index"] * 1000 + b + 130000), backend


class CountingPacked(PackedLike):
    """PackedLike that counts item reads (the slow path)."""

    reads = 0

    def __getitem__(self, i):
        self.reads += 1
        return super().__getitem__(i)


class ItemsOf:
    """The same objects known only through len and ds[i]."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]


def test_subset_of_packed_data_is_gathered_whole(tmp_path):
    from crossjepa.data.subset import Subset

    full = CountingPacked(tmp_path / "full.npy")
    ids = np.arange(1, len(full), 2)
    kw = dict(batch_size=6, num_points=32, seed=4, augment=True)
    items = epochs(make_loader(Subset(ItemsOf(full), ids), backend="torch", num_workers=0, **kw), 1)[0]
    full.reads = 0
    subset = Subset(full, ids)
    assert np.array_equal(subset.array_rows, ids) and np.array_equal(subset.labels_array, full.labels_array[ids])
    for name, loader in loaders(subset, **kw).items():
        assert_same_batches(items, epochs(loader, 1)[0], exact=name != "dali")
    assert full.reads == 0  # every backend gathered from the array, no item was read
    nested = Subset(subset, np.array([0, 2]))  # a subset of a subset maps to the file's rows
    assert np.array_equal(nested.array_rows, ids[[0, 2]])
    relabelled = Subset(full, ids, labels=np.arange(len(ids)) % 2)  # a few-shot episode's labels reach batches
    for name, loader in loaders(relabelled, **kw).items():
        assert torch.cat([b["label"] for b in epochs(loader, 1)[0]]).sort().values.tolist() == sorted(
            (np.arange(len(ids)) % 2).tolist()
        ), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_clouds_are_refused_where_they_enter(tmp_path, backend):
    ds = PackedLike(tmp_path / "p.npy", num_objects=12)
    points = np.array(ds.points_array)
    points[7, 5, 1] = np.nan
    ds.points_array = points
    with pytest.raises(ValueError, match=r"non-finite coordinates in object\(s\) \[7\]"):
        list(make_loader(ds, batch_size=4, backend=backend, shuffle=False, num_points=32, **backend_options(backend)))


@pytest.mark.parametrize("backend", ["torch", "device"])
def test_index_stays_on_the_host_whatever_the_device(packed, backend):
    # "meta" stands in for a GPU: every key but the index lives there, and the index is the epoch order, so the
    # host can slice arrays with it without reading the device (a GPU tensor's .numpy() raises).
    kw = {"num_workers": 0} if backend == "torch" else {}
    loader = make_loader(packed, 8, backend=backend, num_points=16, seed=3, device="meta", **kw)
    batches = list(loader)
    for batch in batches:
        assert {k: v.device.type for k, v in batch.items()} == {
            "points": "meta",
            "label": "meta",
            "rotation": "meta",
            "index": "cpu",
        }
    assert torch.equal(torch.cat([b["index"] for b in batches]), epoch_order(len(packed), True, 3, 0))
