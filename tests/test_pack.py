"""The packed format: exact round trip, identical bytes when packed twice, checksums, atomic writes."""

import hashlib
import json

import numpy as np
import pytest
import torch

from crossjepa.data import PackedDataset, open_dataset, pack
from crossjepa.ops import farthest_point_sample

P = 64
SIZES = {"cone": [150, 150, 90], "cube": [150, 40]}  # 40 < P: padded by cyclic repetition


@pytest.fixture
def source(tmp_path):
    rng = np.random.default_rng(7)
    root = tmp_path / "src"
    for cls, sizes in SIZES.items():
        folder = root / cls / "train"
        folder.mkdir(parents=True)
        for k, n in enumerate(sizes):
            np.save(folder / f"{cls}_{k}.npy", (rng.normal(size=(n, 3)) * 50 + 300).astype(np.float32))
    return root


def test_round_trip_is_exact(source, tmp_path):
    out = pack(source, tmp_path / "packed", num_points=P, progress=False, batch_size=2)
    src = open_dataset(source)
    ds = open_dataset(out)
    assert isinstance(ds, PackedDataset)
    assert len(ds) == len(src) == 5 and ds.classes == src.classes == ["cone", "cube"]
    assert ds.names == src.names and ds.split == "train"
    np.testing.assert_array_equal(ds.labels_array, src.labels)
    assert ds.points_array.dtype == np.float16 and ds.points_array.shape == (5, P, 3)
    assert isinstance(ds.points_array, np.memmap)
    for i in range(len(ds)):
        item = ds[i]
        assert item["points"].dtype == torch.float32 and item["label"] == src[i]["label"]
        stored = np.asarray(ds.points_array[i])
        np.testing.assert_array_equal(item["points"].numpy(), stored.astype(np.float32))
        full = src[i]["points"]
        m = min(len(full), P)
        idx = farthest_point_sample(full[None], m)[0]
        expected = full[idx][torch.arange(P) % m].numpy().astype(np.float16)
        np.testing.assert_array_equal(stored, expected)
    # a prefix of the FPS order is an FPS subsample
    fewer = open_dataset(out, num_points=16)
    np.testing.assert_array_equal(fewer[0]["points"].numpy(), ds.points_array[0, :16].astype(np.float32))


def test_packing_twice_gives_identical_bytes_and_valid_checksums(source, tmp_path):
    a = pack(source, tmp_path / "a", num_points=P, progress=False)
    b = pack(str(source), tmp_path / "b", num_points=P, progress=False, batch_size=3, workers=1)
    names = sorted(p.name for p in a.iterdir())
    assert names == ["labels.npy", "meta.json", "names.json", "points.npy"]
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    meta = json.loads((a / "meta.json").read_text())
    assert meta["num_objects"] == 5 and meta["num_points"] == P and meta["classes"] == ["cone", "cube"]
    for name, digest in meta["sha256"].items():
        assert hashlib.sha256((a / name).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "src"]  # no temporary folders left


def test_verify_names_the_corrupted_file(source, tmp_path):
    out = pack(source, tmp_path / "p", num_points=P, progress=False)
    ds = open_dataset(out)
    ds.verify()
    raw = bytearray((out / "points.npy").read_bytes())
    raw[-3] ^= 0xFF
    (out / "points.npy").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="points.npy: sha256 differs"):
        open_dataset(out).verify()


def test_split_folders_and_errors(source, tmp_path):
    out = pack(source, tmp_path / "root" / "train", num_points=P, progress=False)
    assert len(open_dataset(tmp_path / "root", split="train")) == 5
    with pytest.raises(ValueError, match="holds split 'train', asked for 'test'"):
        open_dataset(out, split="test")
    with pytest.raises(ValueError, match="already exists"):
        pack(source, out, num_points=P, progress=False)
    before = (out / "points.npy").read_bytes()
    pack(source, out, num_points=P // 2, progress=False, overwrite=True)
    assert open_dataset(out).points_array.shape == (5, P // 2, 3)
    assert (out / "points.npy").read_bytes() != before
    with pytest.raises(ValueError, match="num_points"):
        pack(source, tmp_path / "x", num_points=0, progress=False)


def test_failed_pack_leaves_nothing(source, tmp_path):
    (source / "cube" / "train" / "cube_9.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="cube_9.npy"):
        pack(source, tmp_path / "out", num_points=P, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_pack_a_dataset_object(tmp_path):
    synthetic = pytest.importorskip("crossjepa.data.synthetic")
    ds = synthetic.SyntheticShapes(6, num_points=256, seed=0)
    out = pack(ds, tmp_path / "syn", num_points=P, progress=False)
    packed = open_dataset(out)
    assert len(packed) == 6 and packed.classes == list(ds.classes)
    assert [packed[i]["label"] for i in range(6)] == [ds[i]["label"] for i in range(6)]
