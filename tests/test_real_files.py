"""Our readers on real files that other software wrote (tests/data/real, sources and licences in LICENSES.md),
each compared with an independent parser: plyfile (PLY), pypcd4 (PCD), trimesh or a spec parser written here (OFF),
and, for the formats we read through trimesh (STL, OBJ, glTF), small spec parsers written here, so trimesh is not
checked against itself.
Point files must give the same points; meshes the same triangles, or samples on the reference surface.
Also: the four misreads the issue reported, tristrips, the missing [mesh] extra, and `render` on mixed folders."""

import base64
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from crossjepa.data import open_dataset
from crossjepa.data.formats.meshes import read_mesh
from crossjepa.data.formats.off import read_off
from crossjepa.data.formats.pcd import read_pcd
from crossjepa.data.formats.ply import read_ply
from crossjepa.data.formats.pointfiles import read_cloud_file

trimesh = pytest.importorskip("trimesh")  # the [mesh] extra; plyfile and pypcd4 are imported where used

REAL = Path(__file__).parent / "data" / "real"


def real(name: str) -> Path:
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


# ---- geometry helpers --------------------------------------------------------------------------------------


def fan(polygons) -> np.ndarray:
    """Fan triangulation from corner 0 (what OFF/PLY/OBJ polygons mean), written independently of the readers."""
    return np.array([(p[0], p[k], p[k + 1]) for p in polygons for k in range(1, len(p) - 1)], dtype=np.int64)


def triangle_set(corners: np.ndarray, decimals: int = 5) -> np.ndarray:
    """(T, 3, 3) triangle corners -> a canonical sorted array, independent of vertex and face order."""
    c = np.round(corners.astype(np.float64), decimals) + 0.0  # +0.0: -0.0 and 0.0 compare equal after sorting
    c = np.sort(c.view([("", c.dtype)] * 3).reshape(len(c), 3), axis=1).view(c.dtype).reshape(len(c), 9)
    return c[np.lexsort(c.T[::-1])]


def distance_to_surface(points: np.ndarray, corners: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Unsigned distance of each point to the closest of the triangles (T, 3, 3): the closest point of each
    triangle is its plane projection when inside, else the closest point on one of its edges."""
    a, b, c = (corners[:, i].astype(np.float64) for i in range(3))
    n = np.cross(b - a, c - a)
    nn = np.maximum((n * n).sum(1), 1e-300)

    def seg(p, s, e):
        d = e - s
        t = np.clip(((p - s) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-300), 0, 1)
        return np.linalg.norm(p - (s + t[..., None] * d), axis=-1)

    out = []
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk, None, :].astype(np.float64)
        height = ((p - a) * n).sum(-1) / nn
        q = p - height[..., None] * n  # projection on the plane
        inside = np.ones(height.shape, bool)
        for s, e in ((a, b), (b, c), (c, a)):
            inside &= (np.cross(e - s, q - s) * n).sum(-1) >= 0
        d = np.where(inside, np.abs(height) * np.sqrt(nn), np.inf)
        d = np.minimum(d, np.minimum(seg(p, a, b), np.minimum(seg(p, b, c), seg(p, c, a))))
        out.append(d.min(1))
    return np.concatenate(out)


def samples(path, n=300) -> np.ndarray:
    return read_cloud_file(path, n, (0, 0, 0))


def assert_on_surface(points, corners, rel=1e-6):
    size = np.ptp(corners.reshape(-1, 3), axis=0).max()
    assert distance_to_surface(points, corners).max() <= rel * size


# ---- PLY vs plyfile ----------------------------------------------------------------------------------------


def plyfile_mesh(path):
    plyfile = pytest.importorskip("plyfile")
    data = plyfile.PlyData.read(str(path))
    v = data["vertex"]
    vertices = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
    names = [e.name for e in data.elements]
    if "face" not in names or data["face"].count == 0:
        return vertices, None
    return vertices, fan(data["face"]["vertex_indices"])


@pytest.mark.parametrize(
    "name", ["trimesh/fuze.ply", "trimesh/points_ascii.ply", "trimesh/points_bin.ply", "trimesh/points_emptyface.ply"]
)
def test_ply_matches_plyfile(name):
    path = real(name)
    vertices, triangles = read_ply(path)
    ref_vertices, ref_triangles = plyfile_mesh(path)
    np.testing.assert_array_equal(vertices, ref_vertices)
    if ref_triangles is None:
        assert triangles is None
    else:
        np.testing.assert_array_equal(triangles, ref_triangles)


def test_ascii_ply_with_undeclared_values_reads_like_its_binary_twin(caplog):
    """The issue's case: face rows carry more values than the header declares. plyfile refuses the file; we
    read the declared properties (as trimesh does) and say so, and get the binary file's exact mesh."""
    plyfile = pytest.importorskip("plyfile")
    path = real("trimesh/fuze_ascii.ply")
    with pytest.raises(Exception):
        plyfile.PlyData.read(str(path))
    vertices, triangles = read_ply(path)
    assert "more values than the header declares" in caplog.text and "line 523" in caplog.text
    twin_vertices, twin_triangles = plyfile_mesh(real("trimesh/fuze.ply"))
    assert triangles.shape == (1000, 3)
    np.testing.assert_array_equal(triangles, twin_triangles)
    np.testing.assert_allclose(vertices, twin_vertices, atol=1e-6)
    reference = trimesh.load(str(path), process=False)  # splits vertices by texture coordinate: compare corners
    np.testing.assert_allclose(
        triangle_set(vertices[triangles]), triangle_set(np.asarray(reference.vertices)[reference.faces]), atol=2e-5
    )
    assert_on_surface(samples(path), twin_vertices[twin_triangles], rel=1e-5)


def test_ply_tristrips_written_by_plyfile(tmp_path):
    """A tristrips PLY (written by plyfile, ascii and binary): strips are triangulated with alternating winding,
    -1 restarts a strip, and the samples cover the strip's surface."""
    plyfile = pytest.importorskip("plyfile")
    grid = np.array([(x, y, 0.0) for y in (0, 1) for x in range(4)], dtype=np.float32)  # 2 x 4 vertices
    vertex = np.array([tuple(p) for p in grid], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    strip = np.empty(1, dtype=[("vertex_indices", "O")])
    strip["vertex_indices"][0] = np.array([4, 0, 5, 1, -1, 5, 1, 6, 2, 7, 3], dtype=np.int32)
    expected = {(4, 0, 5), (5, 0, 1), (5, 1, 6), (6, 1, 2), (6, 2, 7), (7, 2, 3)}
    for text in (True, False):
        path = tmp_path / f"strips_{text}.ply"
        plyfile.PlyData(
            [
                plyfile.PlyElement.describe(vertex, "vertex"),
                plyfile.PlyElement.describe(
                    strip, "tristrips", len_types={"vertex_indices": "u1"}, val_types={"vertex_indices": "i4"}
                ),
            ],
            text=text,
        ).write(str(path))
        vertices, triangles = read_ply(path)
        assert {tuple(t) for t in triangles.tolist()} == expected
        points = samples(path, 2000)
        assert points[:, :2].min() >= 0 and points[:, 0].max() <= 3 and points[:, 1].max() <= 1
        assert abs(points[:, 0].mean() - 1.5) < 0.1  # uniform over the 3 x 1 strip


# ---- OFF vs trimesh ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["trimesh/whitespace.off", "trimesh/comments.off", "geomview/br2.off", "geomview/vertcube.off"]
)
def test_off_matches_trimesh(name):
    path = real(name)
    vertices, triangles = read_off(path)
    reference = trimesh.load(str(path), process=False)
    np.testing.assert_allclose(vertices, reference.vertices, rtol=0, atol=1e-12)
    assert len(triangles) == len(reference.faces)
    assert_on_surface(samples(path), np.asarray(reference.vertices)[reference.faces])
    assert_on_surface(
        reference.sample(300, seed=0) if hasattr(reference, "sample") else reference.vertices, vertices[triangles]
    )


def test_off_glued_header_is_read():
    vertices, triangles = read_off(real("trimesh/whitespace.off"))  # 'OFF8 6 12' on one line
    assert vertices.shape == (8, 3) and triangles.shape == (12, 3)


def off_spec_parse(path):
    """OFF read as geomview's OFF page describes it, written here independently of our reader: '#' starts a
    comment, blank lines are ignored; the keyword ([ST][C][N]OFF) and then the vertex/face/edge counts; each vertex
    row starts a line (x y z first, then any colour); each face starts a line with its corner count N, its N
    indices may continue on the following lines, and the values after the N-th index are its colour. Returns
    (vertices, faces as index lists, each face's colour values)."""
    rows = [w for w in (ln.split("#", 1)[0].split() for ln in path.read_text().splitlines()) if w]
    assert rows[0][0].endswith("OFF") and len(rows[0]) == 1, rows[0]
    nv, nf = int(rows[1][0]), int(rows[1][1])
    rows = iter(rows[2:])
    vertices = np.array([[float(x) for x in next(rows)[:3]] for _ in range(nv)], dtype=np.float64)
    faces, colours = [], []
    for _ in range(nf):
        words = next(rows)
        n, rest = int(words[0]), words[1:]
        while len(rest) < n:  # a face row wrapped onto the next line
            rest += next(rows)
        faces.append([int(i) for i in rest[:n]])
        colours.append([float(c) for c in rest[n:]])
    assert next(rows, None) is None, "values left after the declared faces"
    return vertices, faces, colours


# Geomview's own example files: what each one exercises, and the face/colour layout the spec parser must find
GEOMVIEW_OFF = {
    # comments before the keyword and after each vertex, blank lines, tabs; 12 pentagons with an RGB colour
    # and a comment after the indices (three corners of each pentagon are collinear)
    "geomview/br2.off": dict(corners={5: 12}, coloured=12),
    # comments after each vertex, blank lines between vertex groups, tabs; 15 quads, two of them followed by
    # an RGBA colour (trimesh 5.2 cannot read this file)
    "geomview/hook.off": dict(corners={4: 15}, coloured=2),
    # comments after the vertices, tab-separated quads with colours (trimesh 5.2 finds 8 faces, not 12 triangles)
    "geomview/unitcube.off": dict(corners={4: 6}, coloured=6),
    # COFF: a comment before the keyword, RGBA per vertex, indented rows with trailing blanks and a trailing tab
    "geomview/vertcube.off": dict(corners={4: 6}, coloured=0),
}


@pytest.mark.parametrize("name", list(GEOMVIEW_OFF))
def test_geomview_off_matches_spec_parser(name):
    """Every face of Geomview's example files is read, by its count, whatever follows it on the line (colour,
    comment) or precedes the header: the same vertices and the fan triangulation of the same polygons as the
    spec parser above gives, and the samples lie on that surface."""
    path = real(name)
    ref_vertices, faces, colours = off_spec_parse(path)
    expected = GEOMVIEW_OFF[name]
    sizes = {}
    for face in faces:
        sizes[len(face)] = sizes.get(len(face), 0) + 1
    assert sizes == expected["corners"]
    assert sum(1 for c in colours if c) == expected["coloured"]
    vertices, triangles = read_off(path)
    np.testing.assert_array_equal(vertices, ref_vertices)
    reference = fan(faces)
    assert len(triangles) == sum(len(f) - 2 for f in faces)
    np.testing.assert_array_equal(triangles, reference)
    assert_on_surface(samples(path), ref_vertices[reference])


def test_off_spec_parser_follows_wrapped_faces(tmp_path):
    """The spec parser above (the reference for the real files) follows a face onto the next lines, as our
    reader does: Geomview's br2.off with every face wrapped after its second index reads as the original.
    No licensed real file with wrapped face rows was found; tests/test_data_formats.py has fixtures for it."""
    original = real("geomview/br2.off")
    lines = original.read_text().splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.startswith("5\t"))
    wrapped = tmp_path / "br2_wrapped.off"
    wrapped.write_text(
        "".join(lines[:start])
        + "".join(ln.replace(" ", "\n", 2) if ln.startswith("5\t") else ln for ln in lines[start:])
    )
    ref_vertices, faces, colours = off_spec_parse(original)
    assert off_spec_parse(wrapped)[1:] == (faces, colours)
    vertices, triangles = read_off(wrapped)
    np.testing.assert_array_equal(vertices, ref_vertices)
    np.testing.assert_array_equal(triangles, fan(faces))


# ---- PCD vs pypcd4 -----------------------------------------------------------------------------------------

PCD_FILES = [
    "bun0.pcd",
    "curve3d.pcd",
    "colored_cloud.pcd",
    "office1_keypoints.pcd",
    "curve_close.pcd",
    "pcl_logo.pcd",
    "milk_color.pcd",
    "ism_train.pcd",
    "brisk_keypoints_gt.pcd",
    "2d_erosion_binary.pcd",
]


def pypcd4_points(path):
    pypcd4 = pytest.importorskip("pypcd4")
    xyz = pypcd4.PointCloud.from_path(str(path)).numpy(("x", "y", "z")).astype(np.float32)
    return xyz[np.isfinite(xyz).all(axis=1)]


@pytest.mark.parametrize("name", PCD_FILES)
def test_pcd_matches_pypcd4(name):
    path = real(f"pcl/{name}")
    np.testing.assert_array_equal(read_pcd(path), pypcd4_points(path))


def test_pcd_binary_compressed_with_nan_written_by_pypcd4(tmp_path):
    """An organised cloud with NaN holes and several field types, written binary_compressed by pypcd4 (an
    independent LZF writer): the same points, NaN rows dropped, as for ascii and binary."""
    pypcd4 = pytest.importorskip("pypcd4")
    rng = np.random.default_rng(0)
    n = 40 * 30
    xyz = rng.normal(size=(n, 3)).astype(np.float32) * 50
    xyz[rng.random(n) < 0.2] = np.nan
    fields = ("intensity", "x", "ring", "y", "z", "t")
    types = (np.float64, np.float32, np.uint16, np.float32, np.float32, np.int8)
    columns = [rng.random(n), xyz[:, 0], rng.integers(0, 60000, n), xyz[:, 1], xyz[:, 2], rng.integers(-9, 9, n)]
    cloud = pypcd4.PointCloud.from_points([np.asarray(c).astype(t) for c, t in zip(columns, types)], fields, types)
    for encoding in ("ascii", "binary", "binary_compressed"):
        path = tmp_path / f"cloud_{encoding}.pcd"
        cloud.save(str(path), encoding=pypcd4.Encoding(encoding))
        ours = read_pcd(path)
        np.testing.assert_array_equal(ours, xyz[np.isfinite(xyz).all(axis=1)])
        np.testing.assert_array_equal(ours, pypcd4_points(path))


# ---- STL / OBJ / glTF: our trimesh-based reader vs parsers written here from the specs ---------------------


def stl_triangles(path) -> np.ndarray:
    data = path.read_bytes()
    count = struct.unpack_from("<I", data, 80)[0] if len(data) >= 84 else -1
    if len(data) == 84 + 50 * count:  # binary: 80-byte header, count, 50-byte facets
        rec = np.frombuffer(data, dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")], count=count, offset=84)
        return rec["v"].astype(np.float64)
    rows = [ln.split()[1:4] for ln in data.decode().splitlines() if ln.strip().startswith("vertex")]
    return np.array(rows, dtype=np.float64).reshape(-1, 3, 3)


def obj_triangles(path) -> np.ndarray:
    vertices, faces = [], []
    for line in path.read_text(errors="replace").splitlines():
        words = line.split()
        if words and words[0] == "v":
            vertices.append([float(w) for w in words[1:4]])
        elif words and words[0] == "f":
            idx = [int(w.split("/")[0]) for w in words[1:]]
            faces.append([i - 1 if i > 0 else len(vertices) + i for i in idx])
    return np.asarray(vertices)[fan(faces)]


def gltf_triangles(path) -> np.ndarray:
    """glTF 2.0 triangles with every node's transform applied (TRS or matrix, parents first)."""
    raw = path.read_bytes()
    if raw[:4] == b"glTF":
        n = struct.unpack_from("<I", raw, 12)[0]
        doc, blob = json.loads(raw[20 : 20 + n]), raw[20 + n + 8 :]
        buffers = [blob]
    else:
        doc = json.loads(raw)
        buffers = [
            base64.b64decode(b["uri"].split(",", 1)[1])
            if b["uri"].startswith("data:")
            else (path.parent / b["uri"]).read_bytes()
            for b in doc["buffers"]
        ]

    def accessor(k):
        acc = doc["accessors"][k]
        view = doc["bufferViews"][acc["bufferView"]]
        dtype = {5126: "<f4", 5125: "<u4", 5123: "<u2", 5121: "u1"}[acc["componentType"]]
        width = {"SCALAR": 1, "VEC3": 3}[acc["type"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        stride = view.get("byteStride", np.dtype(dtype).itemsize * width)
        buf = buffers[view.get("buffer", 0)]
        rows = [np.frombuffer(buf, dtype, width, start + i * stride) for i in range(acc["count"])]
        return np.array(rows, dtype=np.float64)

    def local(node):
        if "matrix" in node:
            return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
        x, y, z, w = node.get("rotation", [0, 0, 0, 1])
        r = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        m = np.eye(4)
        m[:3, :3] = r * np.array(node.get("scale", [1, 1, 1]))
        m[:3, 3] = node.get("translation", [0, 0, 0])
        return m

    out = []

    def visit(k, parent):
        node = doc["nodes"][k]
        world = parent @ local(node)
        for prim in doc["meshes"][node["mesh"]]["primitives"] if "mesh" in node else []:
            pos = accessor(prim["attributes"]["POSITION"])
            order = accessor(prim["indices"]).astype(np.int64).ravel() if "indices" in prim else np.arange(len(pos))
            mode = prim.get("mode", 4)
            if mode == 4:  # triangles
                idx = order.reshape(-1, 3)
            elif mode == 5:  # triangle strip: every second triangle flipped
                idx = np.array(
                    [
                        (order[i], order[i + 1], order[i + 2]) if i % 2 == 0 else (order[i + 1], order[i], order[i + 2])
                        for i in range(len(order) - 2)
                    ]
                )
            else:
                raise AssertionError(f"primitive mode {mode} not handled by this test parser")
            out.append((pos @ world[:3, :3].T + world[:3, 3])[idx])
        for child in node.get("children", []):
            visit(child, world)

    for root in doc["scenes"][doc.get("scene", 0)]["nodes"]:
        visit(root, np.eye(4))
    return np.concatenate(out)


MESHES = [
    ("trimesh/7_8ths_cube.stl", stl_triangles),
    ("trimesh/unit_sphere.STL", stl_triangles),
    ("trimesh/two_objects_mixed_case_names.stl", stl_triangles),
    ("trimesh/fuze.obj", obj_triangles),
    ("trimesh/two_objects.obj", obj_triangles),
    ("trimesh/nested.glb", gltf_triangles),
    ("trimesh/cube.glb", gltf_triangles),
    ("trimesh/rgb_cube_with_primitives.gltf", gltf_triangles),
    ("trimesh/Mesh_PrimitiveMode_04.gltf", gltf_triangles),
]


@pytest.mark.parametrize("name, reference", MESHES, ids=[m[0] for m in MESHES])
def test_mesh_formats_match_spec_parsers(name, reference):
    path = real(name)
    vertices, triangles = read_mesh(path)
    expected = reference(path)
    np.testing.assert_allclose(triangle_set(vertices[triangles]), triangle_set(expected), atol=2e-5)
    assert_on_surface(samples(path), expected, rel=1e-5)


def test_glb_scene_graph_transforms_are_applied():
    """nested.glb places its blocks through three nested nodes: without the transforms the geometry differs."""
    path = real("trimesh/nested.glb")
    vertices, _ = read_mesh(path)
    placed = gltf_triangles(path).reshape(-1, 3)
    raw = trimesh.load(str(path), force="scene", process=False).geometry
    unplaced = np.concatenate([np.asarray(g.vertices) for g in raw.values()])
    assert np.allclose(np.sort(vertices, 0)[[0, -1]], np.sort(placed, 0)[[0, -1]], atol=1e-5)
    assert not np.allclose(np.sort(unplaced, 0)[[0, -1]], np.sort(placed, 0)[[0, -1]], atol=1e-3)


def test_missing_mesh_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ValueError, match=r"nested\.glb.*pip install 'crossjepa\[mesh\]'"):
        read_mesh(real("trimesh/nested.glb"))


# ---- the class-folder layout and the CLI ------------------------------------------------------------------

MIXED = [
    "pcl/pcl_logo.pcd",
    "pcl/bun0.pcd",
    "trimesh/fuze_ascii.ply",
    "trimesh/points_bin.ply",
    "geomview/br2.off",
    "trimesh/nested.glb",
    "trimesh/7_8ths_cube.stl",
    "trimesh/two_objects.obj",
]


@pytest.fixture
def mixed_folder(tmp_path):
    """A class folder holding clouds of every size and every format, as users have them."""
    for k, name in enumerate(MIXED):
        folder = tmp_path / "data" / ("points" if name.endswith((".pcd", "points_bin.ply")) else "meshes") / "train"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{k}_{Path(name).name}").write_bytes(real(name).read_bytes())
    return tmp_path / "data"


def test_class_folder_with_every_format_resamples_to_num_points(mixed_folder):
    ds = open_dataset(mixed_folder, num_points=256)
    assert len(ds) == len(MIXED)
    for i in range(len(ds)):
        points = ds[i]["points"]
        assert points.shape == (256, 3) and np.isfinite(points.numpy()).all()


def test_render_on_a_mixed_folder(mixed_folder, tmp_path, one_thread):
    from crossjepa.cli import main

    out = tmp_path / "views"
    assert (
        main(
            [
                "-q",
                "render",
                "--data",
                str(mixed_folder),
                "--out",
                str(out),
                "--objects",
                "8",
                "--views",
                "1",
                "--image-size",
                "32",
                "--num-points",
                "128",
            ]
        )
        == 0
    )
    assert (out / "view_grid.png").is_file()


def test_render_names_a_bad_file(mixed_folder, tmp_path, capsys, one_thread):
    from crossjepa.cli import main

    bad = mixed_folder / "meshes" / "train" / "00_broken.off"
    bad.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n1 1 0\n3 0 1 2\n")  # one face short
    assert (
        main(
            [
                "-q",
                "render",
                "--data",
                str(mixed_folder),
                "--out",
                str(tmp_path / "v"),
                "--objects",
                "8",
                "--views",
                "1",
                "--image-size",
                "32",
            ]
        )
        != 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
