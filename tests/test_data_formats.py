"""Every public format opens from small fixtures written here, with the right sizes, labels and class names;
unknown layouts and corrupt files give clear errors; clouds are normalised and resampled as documented."""

import pickle
import struct
import zlib

import h5py
import numpy as np
import pytest

from crossjepa.data import CorruptFileError, open_dataset
from crossjepa.data.formats.hdf5 import SCANOBJECTNN_CLASSES
from crossjepa.data.formats.off import read_off
from crossjepa.data.formats.pcd import read_pcd
from crossjepa.data.formats.ply import read_ply


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))  # hash() of a str varies per process


def cloud(rng, n, cols=3):
    """A cloud far from the origin and far from unit scale, so normalisation is visible."""
    return (rng.normal(size=(n, cols)) * rng.uniform(10, 1000) + rng.uniform(-1e4, 1e4)).astype(np.float32)


def normalised(points):
    p = points[:, :3].astype(np.float64)
    p -= p.mean(0)
    return (p / np.sqrt((p * p).sum(1).max())).astype(np.float32)


def assert_normalised(points):
    points = points.numpy().astype(np.float64)
    assert np.abs(points.mean(0)).max() < 1e-5
    assert np.sqrt((points**2).sum(1)).max() == pytest.approx(1.0, abs=1e-5)


# ---- writers for the fixtures ---------------------------------------------------------------------------


def write_pcd(path, points, binary=True, extra=True):
    n = len(points)
    if extra:  # x y z plus an intensity float and a packed rgb uint, as PCL writes them
        fields, size, type_ = "x y z intensity rgb", "4 4 4 4 4", "F F F F U"
        table = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("i", "<f4"), ("rgb", "<u4")])
        table["x"], table["y"], table["z"] = points.T
        table["i"], table["rgb"] = 0.5, 123
    else:
        fields, size, type_ = "x y z", "4 4 4", "F F F"
        table = points.astype("<f4")
    counts = " ".join("1" * len(fields.split()))
    head = (
        f"# .PCD v0.7\nVERSION 0.7\nFIELDS {fields}\nSIZE {size}\nTYPE {type_}\nCOUNT {counts}\n"
        f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {'binary' if binary else 'ascii'}\n"
    )
    if binary:
        body = table.tobytes()
    else:
        rows = [
            " ".join(repr(float(v)) if isinstance(v, (float, np.floating)) else str(v) for v in r)
            for r in (table.tolist() if extra else points.tolist())
        ]
        body = ("\n".join(rows) + "\n").encode()
    path.write_bytes(head.encode() + body)


def write_ply(path, vertices, faces=None, fmt="binary_little_endian"):
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    head = [
        "ply",
        f"format {fmt} 1.0",
        "comment fixture",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
    ]
    if faces is not None:
        head += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    head = ("\n".join(head + ["end_header"]) + "\n").encode()
    if order is None:
        rows = [" ".join(map(repr, map(float, v))) + " 200" for v in vertices]
        rows += [" ".join(map(str, [len(f), *f])) for f in (faces or [])]
        path.write_bytes(head + ("\n".join(rows) + "\n").encode())
        return
    table = np.zeros(len(vertices), dtype=[("p", order + "f4", (3,)), ("red", "u1")])
    table["p"], table["red"] = vertices, 200
    body = table.tobytes()
    for f in faces or []:
        body += np.array([len(f)], "u1").tobytes() + np.array(f, order + "i4").tobytes()
    path.write_bytes(head + body)


def write_off(path, vertices, faces, merged_header=False):
    counts = f"{len(vertices)} {len(faces)} 0"
    head = f"OFF{counts}\n" if merged_header else f"OFF\n# comment\n{counts}\n"
    rows = [" ".join(map(repr, map(float, v))) for v in vertices] + [" ".join(map(str, [len(f), *f])) for f in faces]
    path.write_text(head + "\n".join(rows) + "\n")


BOX_VERTICES = np.array([[x, y, z] for x in (0, 2) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
BOX_QUADS = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]


# ---- class folders and single-file readers ----------------------------------------------------------------


@pytest.fixture
def class_tree(tmp_path, rng):
    """<class>/<split>/<file> with every point-file kind; returns (root, {(class, split, file): raw points})."""
    sources = {}

    def put(cls, split, name, points, writer):
        folder = tmp_path / cls / split
        folder.mkdir(parents=True, exist_ok=True)
        writer(folder / name, points)
        sources[cls, split, name] = points

    put("chair", "train", "c1.pcd", cloud(rng, 300), lambda p, x: write_pcd(p, x, binary=True))
    put("chair", "train", "c2.pcd", cloud(rng, 250), lambda p, x: write_pcd(p, x, binary=False))
    put("chair", "train", "c3.pcd", cloud(rng, 200), lambda p, x: write_pcd(p, x, binary=True, extra=False))
    put("chair", "test", "c4.npy", cloud(rng, 222, cols=6), np.save)
    put("lamp", "train", "l1.ply", cloud(rng, 180), lambda p, x: write_ply(p, x, fmt="ascii"))
    put("lamp", "train", "l2.ply", cloud(rng, 190), write_ply)
    put("lamp", "train", "l3.ply", cloud(rng, 170), lambda p, x: write_ply(p, x, fmt="binary_big_endian"))
    put("sofa", "train", "s1.xyz", cloud(rng, 160), lambda p, x: np.savetxt(p, x))
    put("sofa", "train", "s2.txt", cloud(rng, 150, cols=6), lambda p, x: np.savetxt(p, x, delimiter=","))
    put("sofa", "train", "s3.npy", cloud(rng, 140), np.save)
    (tmp_path / "sofa" / "train" / "notes.md").write_text("ignored: not a point file")
    (tmp_path / "table" / "test").mkdir(parents=True)  # a class present in the test split only
    np.save(tmp_path / "table" / "test" / "t1.npy", cloud(rng, 99))
    return tmp_path, sources


def test_class_folder_sizes_labels_classes(class_tree):
    root, sources = class_tree
    ds = open_dataset(root, up_axis="y")
    assert ds.classes == ["chair", "lamp", "sofa", "table"]
    assert ds.split == "train" and len(ds) == 9
    assert ds.names[:3] == ["chair/c1.pcd", "chair/c2.pcd", "chair/c3.pcd"]
    assert list(ds.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for i, name in enumerate(ds.names):
        cls, file = name.split("/")
        item = ds[i]
        assert item["label"] == ds.classes.index(cls)
        np.testing.assert_allclose(item["points"].numpy(), normalised(sources[cls, "train", file]), atol=2e-6)
        assert_normalised(item["points"])
    test = open_dataset(root, split="test", up_axis="y")
    assert test.classes == ds.classes and len(test) == 2 and list(test.labels) == [0, 3]
    assert test[0]["points"].shape == (222, 3)


def test_class_folder_unknown_split_names_the_pattern(class_tree):
    with pytest.raises(ValueError, match=r"split 'val'.*<class>/val/"):
        open_dataset(class_tree[0], split="val")


def test_pcd_nan_points_are_dropped(tmp_path, rng):
    points = cloud(rng, 64)
    points[[3, 40]] = np.nan
    (tmp_path / "a" / "train").mkdir(parents=True)
    write_pcd(tmp_path / "a" / "train" / "x.pcd", points)
    ds = open_dataset(tmp_path, normalize=False, up_axis="y")
    np.testing.assert_array_equal(ds[0]["points"].numpy(), np.delete(points, [3, 40], axis=0))


@pytest.mark.parametrize("kind", ["off", "off-merged", "ply-binary", "ply-ascii"])
def test_mesh_area_weighted_surface_sampling(tmp_path, kind):
    folder = tmp_path / "box" / "train"
    folder.mkdir(parents=True)
    # quads are triangulated; one extra triangle makes the ply face list mixed (the row-by-row path)
    if kind.startswith("off"):
        write_off(folder / "m.off", BOX_VERTICES, BOX_QUADS, merged_header=kind == "off-merged")
    else:
        faces = BOX_QUADS[:-1] + [[1, 5, 7], [1, 7, 3]]
        write_ply(folder / "m.ply", BOX_VERTICES, faces, fmt="ascii" if kind == "ply-ascii" else "binary_little_endian")
    raw = open_dataset(tmp_path, normalize=False, up_axis="y")
    points = raw[0]["points"].numpy().astype(np.float64)
    assert points.shape == (8192, 3)
    lo, hi = np.array([0, 0, 0]), np.array([2, 1, 1])
    on_face = (np.abs(points - lo) < 1e-5) | (np.abs(points - hi) < 1e-5)
    assert on_face.any(axis=1).all() and (points >= lo - 1e-6).all() and (points <= hi + 1e-6).all()
    # area weighting: the two x faces are 2 of the box's 10 units of area
    assert on_face[:, 0].mean() == pytest.approx(0.2, abs=0.03)
    np.testing.assert_array_equal(open_dataset(tmp_path, normalize=False, up_axis="y")[0]["points"].numpy(), points)
    other_seed = open_dataset(tmp_path, normalize=False, seed=1, up_axis="y")[0]["points"].numpy()
    assert not np.array_equal(other_seed, points)
    sized = open_dataset(tmp_path, num_points=500)[0]["points"]
    assert sized.shape == (500, 3)
    assert_normalised(open_dataset(tmp_path)[0]["points"])


def test_num_points_subsample_and_pad(tmp_path, rng):
    (tmp_path / "a" / "train").mkdir(parents=True)
    big, small = cloud(rng, 100), cloud(rng, 30)
    np.save(tmp_path / "a" / "train" / "big.npy", big)
    np.save(tmp_path / "a" / "train" / "small.npy", small)
    full = open_dataset(tmp_path, up_axis="y")
    ds = open_dataset(tmp_path, num_points=64, up_axis="y")
    sub = ds[0]["points"].numpy()
    assert sub.shape == (64, 3)
    rows = {tuple(r) for r in full[0]["points"].numpy().tolist()}
    assert all(tuple(r) in rows for r in sub.tolist()) and len({tuple(r) for r in sub.tolist()}) == 64
    np.testing.assert_array_equal(open_dataset(tmp_path, num_points=64, up_axis="y")[0]["points"].numpy(), sub)
    assert not np.array_equal(open_dataset(tmp_path, num_points=64, seed=3, up_axis="y")[0]["points"].numpy(), sub)
    padded = ds[1]["points"].numpy()  # 30 points to 64: every point twice, four of them three times
    rows = [tuple(r) for r in full[1]["points"].numpy().tolist()]
    counts = sorted(sum(tuple(r) == row for r in padded.tolist()) for row in rows)
    assert counts == [2] * 26 + [3] * 4


def test_normalize_off_returns_raw_coordinates(tmp_path, rng):
    (tmp_path / "a" / "train").mkdir(parents=True)
    points = cloud(rng, 50)
    np.save(tmp_path / "a" / "train" / "x.npy", points)
    np.testing.assert_array_equal(open_dataset(tmp_path, normalize=False, up_axis="y")[0]["points"].numpy(), points)


# ---- benchmark layouts -----------------------------------------------------------------------------------


def test_shapenet55_point_bert_layout(tmp_path, rng):
    (tmp_path / "shapenet_pc").mkdir()
    (tmp_path / "ShapeNet-55").mkdir()
    ids = {"train": ["02691156-aa", "03001627-bb", "02691156-cc"], "test": ["04379243-dd", "03001627-ee"]}
    clouds = {}
    for split, names in ids.items():
        (tmp_path / "ShapeNet-55" / f"{split}.txt").write_text("".join(f"{n}.npy\n" for n in names))
        for n in names:
            clouds[n] = cloud(rng, 128)
            np.save(tmp_path / "shapenet_pc" / f"{n}.npy", clouds[n])
    for root in (tmp_path, tmp_path / "ShapeNet-55"):
        train = open_dataset(root)
        assert train.classes == ["02691156", "03001627", "04379243"]
        assert len(train) == 3 and list(train.labels) == [0, 1, 0] and train.names == ids["train"]
        np.testing.assert_allclose(train[1]["points"].numpy(), normalised(clouds["03001627-bb"]), atol=2e-6)
    test = open_dataset(tmp_path, split="test", num_points=64)
    assert len(test) == 2 and list(test.labels) == [2, 1] and test[0]["points"].shape == (64, 3)


def _modelnet_root(tmp_path, rng, classes=("airplane", "night_stand", "table")):
    root = tmp_path / "modelnet40_normal_resampled"
    root.mkdir()
    (root / "modelnet40_shape_names.txt").write_text("\n".join(classes) + "\n")
    (root / "modelnet10_shape_names.txt").write_text("night_stand\n")  # the official folder has both lists
    ids = {"train": ["night_stand_0001", "airplane_0001", "table_0001", "airplane_0002"], "test": ["table_0002"]}
    clouds = {}
    for split, names in ids.items():
        (root / f"modelnet40_{split}.txt").write_text("\n".join(names) + "\n")
        for n in names:
            (root / n.rsplit("_", 1)[0]).mkdir(exist_ok=True)
            clouds[n] = cloud(rng, 200, cols=6)
            np.savetxt(root / n.rsplit("_", 1)[0] / f"{n}.txt", clouds[n], delimiter=",", fmt="%.6f")
    return root, ids, clouds


def test_modelnet40_normal_resampled(tmp_path, rng):
    root, ids, clouds = _modelnet_root(tmp_path, rng)
    ds = open_dataset(root)
    assert ds.classes == ["airplane", "night_stand", "table"]
    assert ds.names == ids["train"] and list(ds.labels) == [1, 0, 2, 0]
    expected = normalised(np.loadtxt(root / "night_stand" / "night_stand_0001.txt", delimiter=","))
    np.testing.assert_allclose(ds[0]["points"].numpy(), expected, atol=2e-6)
    test = open_dataset(root, split="test")
    assert len(test) == 1 and test[0]["label"] == 2


def test_point_mae_fps_dat(tmp_path, rng):
    root, ids, _ = _modelnet_root(tmp_path, rng)
    for split, names in ids.items():
        dat = [[cloud(rng, 256, cols=6) for _ in names], [np.array([k % 3], np.int32) for k in range(len(names))]]
        with open(root / f"modelnet40_{split}_256pts_fps.dat", "wb") as f:
            pickle.dump(dat, f)
        if split == "train":
            train_dat = dat
    by_folder = open_dataset(root, num_points=100)  # the .dat wins over ~10,000 text files
    assert by_folder.kind == "modelnet-fps-dat" and by_folder.names == ids["train"]
    assert by_folder.classes == ["airplane", "night_stand", "table"] and list(by_folder.labels) == [0, 1, 2, 0]
    # FPS-ordered source: a subsample is the prefix
    np.testing.assert_allclose(by_folder[1]["points"].numpy(), normalised(train_dat[0][1])[:100], atol=2e-6)
    by_file = open_dataset(root / "modelnet40_train_256pts_fps.dat")
    assert len(by_file) == 4 and by_file.classes == by_folder.classes
    test = open_dataset(root / "modelnet40_train_256pts_fps.dat", split="test")  # the sibling file
    assert len(test) == 1 and test.split == "test"


def _write_h5(path, data, labels):
    with h5py.File(path, "w") as f:
        f["data"] = data
        f["label"] = labels


def test_modelnet40_ply_hdf5_2048(tmp_path, rng):
    shards = {"train0": 5, "train1": 3, "test0": 4}
    arrays = {}
    for shard, n in shards.items():
        arrays[shard] = (rng.normal(size=(n, 64, 3)).astype(np.float32), rng.integers(0, 3, (n, 1)).astype(np.uint8))
        _write_h5(tmp_path / f"ply_data_{shard}.h5", *arrays[shard])
    (tmp_path / "shape_names.txt").write_text("airplane\nbathtub\nbed\n")
    train = open_dataset(tmp_path)
    assert len(train) == 8 and train.classes == ["airplane", "bathtub", "bed"]
    expected = np.concatenate([arrays["train0"][1], arrays["train1"][1]]).reshape(-1)
    np.testing.assert_array_equal(train.labels, expected)
    np.testing.assert_allclose(train[6]["points"].numpy(), normalised(arrays["train1"][0][1]), atol=2e-6)
    assert len(open_dataset(tmp_path, split="test")) == 4


def test_scanobjectnn_file_and_variant_folder(tmp_path, rng):
    variant = tmp_path / "main_split"
    variant.mkdir()
    data = {s: rng.normal(size=(n, 128, 3)).astype(np.float32) for s, n in (("training", 6), ("test", 4))}
    labels = {s: rng.integers(0, 15, len(d)) for s, d in data.items()}
    for s in data:
        _write_h5(variant / f"{s}_objectdataset_augmentedrot_scale75.h5", data[s], labels[s])
    by_folder = open_dataset(variant)
    assert by_folder.classes == SCANOBJECTNN_CLASSES and len(SCANOBJECTNN_CLASSES) == 15
    assert len(by_folder) == 6 and list(by_folder.labels) == list(labels["training"])
    by_file = open_dataset(variant / "training_objectdataset_augmentedrot_scale75.h5", split="test")
    assert len(by_file) == 4 and list(by_file.labels) == list(labels["test"])
    np.testing.assert_allclose(by_file[2]["points"].numpy(), normalised(data["test"][2]), atol=2e-6)
    _write_h5(variant / "training_objectdataset.h5", data["training"], labels["training"])
    with pytest.raises(ValueError, match="pass the file"):
        open_dataset(variant)


def test_modelnet_fewshot_fold(tmp_path, rng):
    folder = tmp_path / "5way_10shot"
    folder.mkdir()
    fold = {s: [(cloud(rng, 128, cols=6), k % 5, f"x{k}") for k in range(n)] for s, n in (("train", 50), ("test", 20))}
    with open(folder / "3.pkl", "wb") as f:
        pickle.dump(fold, f)
    train = open_dataset(folder / "3.pkl")
    assert len(train) == 50 and train.classes is None and list(train.labels[:6]) == [0, 1, 2, 3, 4, 0]
    test = open_dataset(folder / "3.pkl", split="test")
    assert len(test) == 20
    np.testing.assert_allclose(test[7]["points"].numpy(), normalised(fold["test"][7][0]), atol=2e-6)
    with pytest.raises(ValueError, match="pass one fold file"):
        open_dataset(folder)


def test_synthetic_spec():
    pytest.importorskip("crossjepa.data.synthetic")
    ds = open_dataset("synthetic:4", num_points=256)
    assert len(ds) == 4 and ds[0]["points"].shape == (256, 3) and len(ds.classes) >= 10
    with pytest.raises(ValueError, match="synthetic:N"):
        open_dataset("synthetic:many")


# ---- errors and identity ---------------------------------------------------------------------------------


def test_unknown_layout_says_what_was_looked_for(tmp_path):
    (tmp_path / "readme.md").write_text("not data")
    with pytest.raises(ValueError, match="unknown dataset layout; looked for .*ShapeNet55.*<class>/<split>"):
        open_dataset(tmp_path)
    with pytest.raises(ValueError, match="not a dataset file"):
        open_dataset(tmp_path / "readme.md")
    with pytest.raises(ValueError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="num_points"):
        open_dataset(tmp_path, num_points=0)


@pytest.mark.parametrize("name", ["x.pcd", "x.ply", "x.off", "x.npy", "x.xyz"])
def test_corrupt_point_file_names_the_file(tmp_path, rng, name):
    folder = tmp_path / "a" / "train"
    folder.mkdir(parents=True)
    path = folder / name
    points = cloud(rng, 40)
    if name.endswith(".pcd"):
        write_pcd(path, points)
        path.write_bytes(path.read_bytes()[:-100])  # truncated binary data
    elif name.endswith(".ply"):
        write_ply(path, points)
        path.write_bytes(path.read_bytes()[:-50])
    elif name.endswith(".off"):
        write_off(path, BOX_VERTICES, BOX_QUADS)
        path.write_text(path.read_text().replace("0.0", "zero", 1))
    elif name.endswith(".npy"):
        path.write_bytes(b"\x93NUMPY garbage" + rng.bytes(64))
    else:
        path.write_text("1 2 3\n4 5\n")
    ds = open_dataset(tmp_path)
    with pytest.raises(CorruptFileError, match=f"corrupt file {path}"):
        ds[0]


def test_corrupt_container_files_name_the_file(tmp_path, rng):
    bad_h5 = tmp_path / "training_objectdataset.h5"
    bad_h5.write_bytes(rng.bytes(256))
    with pytest.raises(CorruptFileError, match=str(bad_h5)):
        open_dataset(bad_h5)
    folder = tmp_path / "5way_10shot"
    folder.mkdir()
    (folder / "0.pkl").write_bytes(rng.bytes(100))
    with pytest.raises(CorruptFileError, match="0.pkl"):
        open_dataset(folder / "0.pkl")
    wrong_keys = tmp_path / "ply_data_train0.h5"
    with h5py.File(wrong_keys, "w") as f:
        f["points"] = np.ones((2, 4, 3))
    with pytest.raises(CorruptFileError, match="'data' and 'label'"):
        open_dataset(tmp_path / "ply_data_train0.h5")


def test_non_finite_cloud_is_an_error(tmp_path, rng):
    (tmp_path / "a" / "train").mkdir(parents=True)
    points = cloud(rng, 20)
    points[5, 1] = np.inf
    np.save(tmp_path / "a" / "train" / "x.npy", points)
    with pytest.raises(ValueError, match="x.npy: non-finite"):
        open_dataset(tmp_path)[0]


def test_index_and_fingerprint(class_tree):
    root, _ = class_tree
    ds = open_dataset(root)
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert ds[-1]["label"] == ds[len(ds) - 1]["label"]
    assert ds.fingerprint() == open_dataset(root).fingerprint()
    # the objects, not the sampling: a cache built at one point count matches the same data read at another
    assert ds.fingerprint() == open_dataset(root, num_points=64).fingerprint()
    np.save(root / "chair" / "train" / "c0.npy", np.ones((5, 3)) * np.arange(3))  # first object changes
    assert ds.fingerprint() != open_dataset(root).fingerprint()


# ---- right or refuse: meshes never turn into vertex clouds, rows are checked against their header ---------


def test_off_faces_wrapped_over_lines_match_one_face_per_line(tmp_path):
    flat, wrapped = tmp_path / "flat.off", tmp_path / "wrapped.off"
    write_off(flat, BOX_VERTICES, BOX_QUADS)
    rows = [" ".join(map(repr, map(float, v))) for v in BOX_VERTICES]
    rows += ["\n".join(map(str, [len(f), *f])) + " 0.5 0.5 0.5" for f in BOX_QUADS]  # one value per line + colour
    wrapped.write_text(f"OFF{len(BOX_VERTICES)} {len(BOX_QUADS)} 0\n" + "\n".join(rows) + "\n")
    np.testing.assert_array_equal(read_off(wrapped)[1], read_off(flat)[1])


@pytest.mark.parametrize(
    "body, reason",
    [
        ("3 2 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n2 1 2\n", "none has 3 or more corners"),  # edges only
        ("3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 2\n", "line 7: data after the 1 declared faces"),
        ("3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "expected 2 faces, the file ends after 1"),
        ("3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", "line 4: a vertex row needs x y z"),
        ("3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2.5\n", "not an integer"),
    ],
)
def test_off_that_does_not_add_up_is_refused(tmp_path, body, reason):
    path = tmp_path / "bad.off"
    path.write_text("OFF\n" + body)
    with pytest.raises(CorruptFileError, match=f"{path}.*{reason}"):
        read_off(path)


PLY_HEAD = (
    "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
    "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
)


@pytest.mark.parametrize(
    "body, reason",
    [
        ("0 0 0\n1 0 0\n0 1\n3 0 1 2\n", "line 12: a vertex row with 2 values"),
        ("0 0 0\n1 0 0\n0 1 0\n3 0 1\n", "line 13: a face row with 3 values"),
        ("0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "declares 1 face rows but none gives a triangle"),
        ("0 0 0\n1 0 0\n0 1 0\n", "expected 1 face rows, the file ends after 0"),
        ("0 0 0\n1 0 0\n0 1 0\n3 0 1 x\n", "line 13: bad number"),
    ],
)
def test_ascii_ply_rows_are_checked_against_the_header(tmp_path, body, reason):
    path = tmp_path / "bad.ply"
    path.write_text(PLY_HEAD + body)
    with pytest.raises(CorruptFileError, match=f"{path}.*{reason}"):
        read_ply(path)


def test_ascii_ply_mixed_polygons_with_extra_values(tmp_path, caplog):
    path = tmp_path / "mixed.ply"
    path.write_text(
        PLY_HEAD.replace("vertex 3", "vertex 4").replace("face 1", "face 2")
        + "0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2 9 9 9\n4 0 1 3 2\n"
    )
    _, triangles = read_ply(path)
    assert triangles.tolist() == [[0, 1, 2], [0, 1, 3], [0, 3, 2]]
    assert "1 face rows carry more values" in caplog.text


def test_ply_face_element_without_index_list_is_refused(tmp_path):
    path = tmp_path / "bad.ply"
    path.write_text(PLY_HEAD.replace("vertex_indices", "texcoord") + "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(CorruptFileError, match="no vertex_indices list"):
        read_ply(path)


def test_pcd_binary_compressed_damage_is_refused(tmp_path):
    head = b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n"
    raw = np.arange(6, dtype="<f4").tobytes()
    stream = bytes([len(raw) - 1]) + raw  # one literal run
    good = head + b"DATA binary_compressed\n" + struct.pack("<II", len(stream), len(raw)) + stream
    path = tmp_path / "c.pcd"
    path.write_bytes(good)
    np.testing.assert_array_equal(read_pcd(path), np.array([[0, 2, 4], [1, 3, 5]], np.float32))  # field-major
    for damaged, reason in (
        (good[:-3], "truncated"),
        (good.replace(b"POINTS 2", b"POINTS 3"), "differs from"),
        (good[: -len(stream) - 8] + struct.pack("<II", len(stream), 2**31) + stream, "declares 2147483648 bytes"),
    ):
        path.write_bytes(damaged)
        with pytest.raises(CorruptFileError, match=f"{path}.*{reason}"):
            read_pcd(path)
