"""Fuzzing every point/mesh reader (hypothesis, derandomised so CI runs are reproducible, bounded in examples and
time). Each damaged file must give points or one ValueError whose one-line message names the file: never an
allocation of a declared count (ALLOC_LIMIT), a MemoryError, or a traceback from numpy. Mutations that keep a file's
meaning (CRLF line ends, trailing blank lines) must give exactly the original points, and a changed count in an
OFF or PCD header must give the original points or an error, never other points."""

import io
import os
import re
import struct
import tracemalloc
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossjepa.data.formats.lzf import lzf_decompress
from crossjepa.data.formats.pointfiles import read_cloud_file

REAL = Path(__file__).parent / "data" / "real"
# CROSSJEPA_FUZZ_EXAMPLES raises the examples per test for a longer hunt; CI keeps the bounded default
FUZZ = settings(
    max_examples=int(os.environ.get("CROSSJEPA_FUZZ_EXAMPLES", 25)),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Reading a seed file allocates at most ~0.1 MiB (tracemalloc counts numpy's arrays too); an array of a damaged
# header's count (2**31 and up) would be GiBs.
ALLOC_LIMIT = 16 * 2**20


def literal_lzf(raw: bytes) -> bytes:
    """A valid LZF stream made only of literal runs (chunks of at most 32 bytes)."""
    out = bytearray()
    for i in range(0, len(raw), 32):
        chunk = raw[i : i + 32]
        out += bytes([len(chunk) - 1]) + chunk
    return bytes(out)


def pcd(mode: str) -> bytes:
    rng = np.random.default_rng(1)
    n = 12
    table = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("c", "<u1", (2,)), ("d", "<f8")])
    table["x"], table["y"], table["z"] = rng.normal(size=(3, n)).astype(np.float32)
    table["c"], table["d"] = 7, rng.random(n)
    head = (
        f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z c d\nSIZE 4 4 4 1 8\nTYPE F F F U F\nCOUNT 1 1 1 2 1\n"
        f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {mode}\n"
    ).encode()
    if mode == "ascii":
        return (
            head
            + "".join(f"{r[0]!r} {r[1]!r} {r[2]!r} {r[3][0]} {r[3][1]} {r[4]!r}\n" for r in table.tolist()).encode()
        )
    if mode == "binary":
        return head + table.tobytes()
    raw = b"".join(table[name].tobytes() for name in table.dtype.names)  # field-major
    packed = literal_lzf(raw)
    return head + struct.pack("<II", len(packed), len(raw)) + packed


TETRA = "0 0 0\n1 0 0\n0 1 0\n0 0 1\n"
FACES = "3 0 1 2\n3 0 1 3\n3 0 2 3\n4 1 2 3 1\n"


def ply(fmt: str, faces: bool = True) -> bytes:
    head = (
        f"ply\nformat {fmt} 1.0\ncomment fuzz seed\nelement vertex 4\nproperty float x\nproperty float y\n"
        f"property float z\n"
        + ("element face 4\nproperty list uchar int vertex_indices\n" if faces else "")
        + "end_header\n"
    ).encode()
    if fmt == "ascii":
        return head + (TETRA + (FACES if faces else "")).encode()
    order = "<" if fmt == "binary_little_endian" else ">"
    body = np.array([[float(v) for v in r.split()] for r in TETRA.splitlines()], dtype=order + "f4").tobytes()
    if faces:
        for row in FACES.splitlines():
            n, *idx = (int(v) for v in row.split())
            body += bytes([n]) + np.array(idx, dtype=order + "i4").tobytes()
    return head + body


def npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32))
    return buf.getvalue()


@cache
def seeds() -> dict:
    """name -> (suffix, bytes, is_text). Written here, plus a few small real files."""
    made = {
        "ply_ascii_mesh": (".ply", ply("ascii"), True),
        "ply_ascii_points": (".ply", ply("ascii", faces=False), True),
        "ply_le_mesh": (".ply", ply("binary_little_endian"), False),
        "ply_be_mesh": (".ply", ply("binary_big_endian"), False),
        "off": (".off", ("OFF\n# a comment\n4 4 0\n" + TETRA + FACES).encode(), True),
        "off_glued_wrapped": (".off", ("OFF4 2 0\n" + TETRA + "3 0\n1\n2\n4 0 1\n2 3 255 0 0\n").encode(), True),
        "pcd_ascii": (".pcd", pcd("ascii"), True),
        "pcd_binary": (".pcd", pcd("binary"), False),
        "pcd_compressed": (".pcd", pcd("binary_compressed"), False),
        "xyz": (".xyz", b"1 2 3\n4 5 6\n7 8 10\n-1 0 2\n", True),
        "npy": (".npy", npy(), False),
    }
    for name, is_text in (
        ("trimesh/points_ascii.ply", True),
        ("trimesh/whitespace.off", True),
        ("pcl/brisk_keypoints_gt.pcd", False),
        ("pcl/curve_close.pcd", False),
    ):
        path = REAL / name
        if path.is_file():
            made[name] = (path.suffix.lower(), path.read_bytes(), is_text)
    return made


SEED_NAMES = list(seeds())
TEXT_SEEDS = [n for n in SEED_NAMES if seeds()[n][2]]


def read(path: Path):
    """Points, or None for one clear ValueError naming the file; anything else fails the test, and so does
    allocating more than ALLOC_LIMIT while reading (a count taken at the header's word)."""
    error = None
    tracemalloc.start()
    try:
        points = read_cloud_file(path, 32, (0, 0, 0))
    except ValueError as e:
        points, error = None, str(e)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= ALLOC_LIMIT, f"reading {path.name} allocated {peak / 2**20:.1f} MiB"
    if error is not None:
        assert str(path) in error, f"error does not name the file: {error!r}"
        assert "\n" not in error.strip(), f"error is not one line: {error!r}"
    return points


def check(tmp_path, name, data: bytes):
    path = tmp_path / f"fuzz{seeds()[name][0]}"
    path.write_bytes(data)
    points = read(path)
    if points is not None:
        assert points.ndim == 2 and points.shape[1] >= 3 and len(points)
    return points


def original(tmp_path, name):
    points = check(tmp_path, name, seeds()[name][1])
    assert points is not None, f"seed {name} must read"
    return points


def header_end(data: bytes) -> int:
    """Where the header ends: after end_header (PLY), the DATA line (PCD), the counts line (OFF)."""
    if b"OFF" in data[:100]:
        pos = 0
        for line in data.split(b"\n"):
            pos += len(line) + 1
            if re.search(rb"\d", line.split(b"#")[0]):
                return min(pos, len(data))
    for marker in (b"end_header", b"\nDATA ", b"\x00"):
        at = data.find(marker)
        if at >= 0:
            return min(len(data), data.find(b"\n", at + 1) + 1 or len(data))
    return min(len(data), 200)


# ---- the properties ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SEED_NAMES)
def test_seeds_read(tmp_path, name):
    original(tmp_path, name)


def test_pcd_data_kinds_agree(tmp_path):
    """The same table as ascii, binary and binary_compressed (COUNT 2 and 8-byte fields around x y z)."""
    clouds = [original(tmp_path, f"pcd_{kind}") for kind in ("ascii", "binary", "compressed")]
    assert clouds[0].shape == (12, 3)
    for cloud in clouds[1:]:
        np.testing.assert_array_equal(cloud, clouds[0])


@pytest.mark.parametrize("name", SEED_NAMES)
def test_empty_file(tmp_path, name):
    assert check(tmp_path, name, b"") is None


@pytest.mark.parametrize("name", SEED_NAMES)
@FUZZ
@given(data=st.data())
def test_truncated(tmp_path, name, data):
    raw = seeds()[name][1]
    check(tmp_path, name, raw[: data.draw(st.integers(0, len(raw) - 1))])


@pytest.mark.parametrize("name", SEED_NAMES)
@FUZZ
@given(data=st.data())
def test_flipped_bytes(tmp_path, name, data):
    raw = bytearray(seeds()[name][1])
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    check(tmp_path, name, bytes(raw))


COUNTS = st.one_of(st.integers(0, 40), st.sampled_from([-1, 2**31, 2**32 + 4, 10**12, 2**63, 10**30]))


@pytest.mark.parametrize("name", SEED_NAMES)
@FUZZ
@given(data=st.data())
def test_wrong_counts(tmp_path, name, data):
    """A number in the header replaced (element/vertex/face/point counts, sizes, huge values): never an
    allocation of the declared size; OFF and PCD give the original points or an error."""
    raw = seeds()[name][1]
    end = header_end(raw)
    numbers = list(re.finditer(rb"-?\d+", raw[:end]))
    if not numbers:
        return
    hit = data.draw(st.sampled_from(numbers))
    value = data.draw(COUNTS)
    mutated = raw[: hit.start()] + str(value).encode() + raw[hit.end() :]
    points = check(tmp_path, name, mutated)
    if points is not None and seeds()[name][0] in (".off", ".pcd") and mutated != raw:
        np.testing.assert_array_equal(points, original(tmp_path, name))


@pytest.mark.parametrize("name", TEXT_SEEDS)
@FUZZ
@given(data=st.data())
def test_bad_values_in_text(tmp_path, name, data):
    """A number in the body replaced by NaN/Inf/overflow/garbage/a fraction: points (NaN rows dropped or
    refused) or one error."""
    raw = seeds()[name][1]
    end = header_end(raw) if seeds()[name][0] in (".ply", ".pcd") else 0
    numbers = [m for m in re.finditer(rb"-?\d+(\.\d+)?", raw) if m.start() >= end]
    hit = data.draw(st.sampled_from(numbers))
    token = data.draw(st.sampled_from([b"nan", b"inf", b"-inf", b"1e400", b"NaN", b"0x10", b"1.5", b"-2", b"\xff"]))
    check(tmp_path, name, raw[: hit.start()] + token + raw[hit.end() :])


@pytest.mark.parametrize("name", [n for n in SEED_NAMES if not seeds()[n][2]])
@FUZZ
@given(data=st.data())
def test_nan_inf_in_binary(tmp_path, name, data):
    raw = bytearray(seeds()[name][1])
    start = header_end(bytes(raw))
    if start >= len(raw) - 4:
        return
    at = data.draw(st.integers(start, len(raw) - 4))
    raw[at : at + 4] = struct.pack("<f", data.draw(st.sampled_from([float("nan"), float("inf"), -float("inf")])))
    check(tmp_path, name, bytes(raw))


@pytest.mark.parametrize("name", SEED_NAMES)
@FUZZ
@given(junk=st.binary(min_size=1, max_size=8).filter(lambda b: any(c >= 0x80 for c in b)), data=st.data())
def test_non_utf8_header(tmp_path, name, junk, data):
    raw = seeds()[name][1]
    at = data.draw(st.integers(0, max(0, header_end(raw) - 1)))
    check(tmp_path, name, raw[:at] + junk + raw[at:])


@pytest.mark.parametrize("name", TEXT_SEEDS)
def test_crlf_and_blank_lines_change_nothing(tmp_path, name):
    raw = seeds()[name][1]
    expected = original(tmp_path, name)
    for variant in (raw.replace(b"\n", b"\r\n"), raw + b"\n\n  \n", raw.replace(b"\n", b"\r\n") + b"\r\n"):
        np.testing.assert_array_equal(check(tmp_path, name, variant), expected)


# ---- the LZF decoder on its own ----------------------------------------------------------------------------


@FUZZ
@given(raw=st.binary(max_size=600), repeat=st.integers(1, 40))
def test_lzf_decodes_what_liblzf_encodes(raw, repeat):
    lzf = pytest.importorskip("lzf")  # python-neo-lzf (pypcd4's codec): an independent encoder
    payload = raw * repeat  # repeats make back-references, long and overlapping ones
    packed = lzf.compress(payload) if payload else None
    if packed:
        assert lzf_decompress(packed, len(payload)) == payload
    assert lzf_decompress(literal_lzf(payload), len(payload)) == payload


@FUZZ
@given(stream=st.binary(max_size=200), size=st.one_of(st.integers(0, 5000), st.just(2**40)))
def test_lzf_damaged_streams_are_value_errors(stream, size):
    try:
        out = lzf_decompress(stream, size)
    except ValueError:
        return
    assert len(out) == size
