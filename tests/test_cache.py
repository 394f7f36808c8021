"""The teacher-embedding cache: layout, resume after a kill at any point, verify, refusal of other settings."""

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from crossjepa import render
from crossjepa.data.synthetic import SyntheticShapes
from crossjepa.teacher import CacheCorruptError, RenderedViews, build_cache, load_teacher, open_cache, verify_cache

ROOT = Path(__file__).resolve().parents[1]
OBJECTS, POINTS, VIEWS, SIZE = 10, 256, 3, 32
BUILD = dict(num_views=VIEWS, chunk_size=3, batch_size=6, progress=False)  # 4 chunks, 2 objects per batch
FILES = ("embeddings.npy", "poses.npy", "histograms.npy", "stats.npy", "meta.json")


class Killed(Exception):
    pass


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset():
    return SyntheticShapes(OBJECTS, num_points=POINTS, seed=int.from_bytes(os.urandom(2), "little"))


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("test_vit", random_init=True, image_size=SIZE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, dataset, teacher):
    return build_cache(dataset, tmp_path_factory.mktemp("ref") / "cache", teacher, **BUILD)


def assert_same_bytes(a: Path, b: Path):
    assert sorted(os.listdir(a)) == sorted(os.listdir(b)) == sorted(FILES)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not a.with_name(a.name + ".partial").exists()


def copy_of(reference: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "cache"))


def test_layout_shapes_and_contents(reference, dataset, teacher):
    cache = open_cache(reference)
    assert (cache.num_objects, cache.num_views, cache.dim) == (OBJECTS, VIEWS, teacher.embed_dim)
    assert isinstance(cache.embeddings, np.memmap) and cache.embeddings.dtype == np.float16
    plain = np.load(reference / "embeddings.npy", mmap_mode="r")
    assert plain.shape == (OBJECTS, VIEWS, teacher.embed_dim) and np.array_equal(plain, cache.embeddings)
    assert cache.poses.dtype == np.float32 and cache.poses.shape == (OBJECTS, VIEWS, 4, 4)
    assert cache.histograms.dtype == np.float32 and cache.histograms.shape == (OBJECTS, VIEWS, 24)
    np.testing.assert_allclose(cache.histograms.reshape(OBJECTS, VIEWS, 3, 8).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(cache.poses[4], render.sphere_poses(VIEWS).numpy())

    # One object's row is the teacher's embedding of its rendered views, at the teacher's resolution.
    out = render.render_points(dataset[4]["points"][None], render.sphere_poses(VIEWS), image_size=SIZE)
    expected = teacher(out.image[0]).half().numpy()
    np.testing.assert_allclose(cache.embeddings[4].astype(np.float32), expected.astype(np.float32), atol=2e-3)

    emb = cache.embeddings.astype(np.float64).reshape(-1, cache.dim)
    np.testing.assert_allclose(cache.target_mean, emb.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cache.target_std, emb.std(0), rtol=1e-4, atol=1e-5)
    assert cache.target_mean.dtype == cache.target_std.dtype == np.float32

    meta = cache.meta
    assert meta["teacher"]["name"] == "test_vit" and meta["teacher"]["weights_id"] == "random-init"
    assert meta["teacher"]["pooling"] == "cls" and meta["views"]["image_size"] == SIZE
    assert meta["dataset"]["fingerprint"] == dataset.fingerprint()
    assert meta["chunk_size"] == 3 and all(len(v) == 4 for v in meta["chunks"].values())
    verify_cache(reference)
    cache.check_dataset(dataset)
    with pytest.raises(ValueError, match="was built for dataset"):
        cache.check_dataset(SyntheticShapes(OBJECTS, num_points=POINTS + 1))
    again = pickle.loads(pickle.dumps(cache))
    assert isinstance(again.embeddings, np.memmap) and np.array_equal(again.embeddings, cache.embeddings)


@pytest.mark.parametrize("kill_after_chunk", [0, 3])  # mid-build, and after the last chunk before finishing
def test_resume_after_a_kill_between_chunks_gives_identical_bytes(
    tmp_path, reference, dataset, teacher, kill_after_chunk
):
    def hook(index, count):
        if index == kill_after_chunk:
            raise Killed

    out = tmp_path / "cache"
    with pytest.raises(Killed):
        build_cache(dataset, out, teacher, on_chunk=hook, **BUILD)
    with pytest.raises(ValueError, match="not finished"):
        open_cache(out)
    (tmp_path / "cache.partial" / "progress.json.tmp").write_text("{")  # as if killed while rewriting it
    done = []
    build_cache(dataset, out, teacher, resume=True, on_chunk=lambda k, n: done.append(k), **BUILD)
    assert done == list(range(kill_after_chunk + 1, 4))  # finished chunks are not recomputed
    assert_same_bytes(out, reference)


def test_resume_after_a_kill_inside_a_chunk_gives_identical_bytes(tmp_path, reference, dataset, teacher):
    class DiesOnThirdBatch(RenderedViews):  # same settings as the default views; dies mid-chunk 1
        calls = 0

        def __call__(self, indices):
            self.calls += 1
            if self.calls == 3:
                raise Killed
            return super().__call__(indices)

    out = tmp_path / "cache"
    with pytest.raises(Killed):
        build_cache(dataset, out, teacher, view_source=DiesOnThirdBatch(dataset, VIEWS, SIZE), **BUILD)
    # Resuming with other batch/chunk sizes keeps the build's own, so the bytes still match.
    build_cache(dataset, out, teacher, resume=True, **{**BUILD, "batch_size": 9, "chunk_size": 5})
    assert_same_bytes(out, reference)


def test_a_kill_at_every_file_replacement_resumes_to_identical_bytes(tmp_path, monkeypatch, teacher):
    small = SyntheticShapes(4, num_points=POINTS, seed=int.from_bytes(os.urandom(2), "little"))
    settings = {**BUILD, "chunk_size": 2}
    real_replace, plan, calls = os.replace, {"at": None, "after": False}, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) - 1 == plan["at"] and not plan["after"]:
            raise Killed
        real_replace(src, dst)
        if len(calls) - 1 == plan["at"]:
            raise Killed

    monkeypatch.setattr(os, "replace", replace)
    reference = build_cache(small, tmp_path / "ref", teacher, **settings)
    steps = len(calls)  # progress/build/stats/meta writes and the final rename
    assert steps >= 6
    # Dying just before each step covers every state between steps; also die just after the last one.
    for at, after in [(at, False) for at in range(steps)] + [(steps - 1, True)]:
        out = tmp_path / f"c{at}{after:d}"
        calls.clear()
        plan.update(at=at, after=after)
        with pytest.raises(Killed):
            build_cache(small, out, teacher, **settings)
        plan["at"] = None
        build_cache(small, out, teacher, resume=True, **settings)
        assert_same_bytes(out, reference)


_CHILD = textwrap.dedent("""
    import sys
    from crossjepa.data.synthetic import SyntheticShapes
    from crossjepa.teacher import build_cache, load_teacher
    out, seed = sys.argv[1], int(sys.argv[2])
    dataset = SyntheticShapes({objects}, num_points={points}, seed=seed)
    teacher = load_teacher("test_vit", random_init=True, image_size={size})
    build_cache(dataset, out, teacher, on_chunk=lambda k, n: print("chunk", k, flush=True), **{build})
""")


def test_resume_after_sigkill_gives_identical_bytes(tmp_path, reference, dataset, teacher):
    out = tmp_path / "cache"
    script = _CHILD.format(objects=OBJECTS, points=POINTS, size=SIZE, build=BUILD)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(out), str(dataset.seed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "chunk 0"
        os.kill(child.pid, signal.SIGKILL)  # now busy with chunk 1
    finally:
        child.wait(timeout=60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    build_cache(dataset, out, teacher, resume=True, **BUILD)
    assert_same_bytes(out, reference)


@pytest.mark.parametrize("name,obj,chunk", [("embeddings.npy", 7, 2), ("histograms.npy", 1, 0), ("poses.npy", 9, 3)])
def test_verify_names_the_first_bad_chunk(tmp_path, reference, name, obj, chunk):
    out = copy_of(reference, tmp_path)
    array = np.load(out / name, mmap_mode="r")
    offset = array.offset + obj * array[0].nbytes + int(np.random.randint(array[0].nbytes))
    del array
    with open(out / name, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << np.random.randint(8))]))
    with pytest.raises(CacheCorruptError, match=f"{name} chunk {chunk} ") as info:
        verify_cache(out)
    assert (info.value.file, info.value.chunk) == (name, chunk)


def test_verify_catches_bad_stats(tmp_path, reference):
    out = copy_of(reference, tmp_path)
    stats = np.load(out / "stats.npy")
    stats[0, 0] += 1.0
    np.save(out / "stats.npy", stats)
    with pytest.raises(CacheCorruptError, match="stats.npy"):
        verify_cache(out)


def test_same_settings_already_complete_other_settings_refused(tmp_path, reference, dataset, teacher, caplog):
    out = copy_of(reference, tmp_path)
    with caplog.at_level(logging.INFO, logger="crossjepa.teacher.cache"):
        assert build_cache(dataset, out, teacher, **BUILD) == out
    assert "already complete" in caplog.text
    assert_same_bytes(out, reference)

    other = load_teacher("test_vit", random_init=True, image_size=SIZE, seed=1)
    with pytest.raises(ValueError, match="different teacher"):
        build_cache(dataset, out, other, **BUILD)
    with pytest.raises(ValueError, match="different views"):
        build_cache(dataset, out, teacher, **{**BUILD, "num_views": VIEWS + 1})
    with pytest.raises(ValueError, match="different dataset"):
        build_cache(SyntheticShapes(OBJECTS + 1, num_points=POINTS), out, teacher, **BUILD)
    assert_same_bytes(out, reference)  # refusals leave the cache untouched

    stranger = tmp_path / "someone_elses"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a teacher cache"):
        build_cache(dataset, stranger, teacher, overwrite=True, **BUILD)

    build_cache(dataset, out, other, overwrite=True, **BUILD)
    assert open_cache(out).meta["teacher"]["params_sha256"] == other.params_sha256
    assert not (tmp_path / "cache.old").exists() and not (tmp_path / "cache.partial").exists()
    verify_cache(out)


def test_resume_refuses_an_unfinished_build_with_other_settings(tmp_path, dataset, teacher):
    out = tmp_path / "cache"

    def stop(index, count):
        raise Killed

    with pytest.raises(Killed):
        build_cache(dataset, out, teacher, on_chunk=stop, **BUILD)
    other = load_teacher("test_vit", random_init=True, image_size=SIZE, pooling="mean")
    with pytest.raises(ValueError, match="unfinished build with a different teacher"):
        build_cache(dataset, out, other, resume=True, **BUILD)
    build_cache(dataset, out, other, resume=True, overwrite=True, **BUILD)
    assert open_cache(out).meta["teacher"]["pooling"] == "mean"


def test_views_from_a_callable(tmp_path, dataset, teacher):
    def from_disk(indices):  # stands in for renders on disk: flat grey background, a random square
        images = torch.full((len(indices), VIEWS, 3, SIZE, SIZE), 0.5)
        for row, i in enumerate(indices):
            g = torch.Generator().manual_seed(i)
            images[row, :, :, 8:20, 8:20] = torch.rand(VIEWS, 3, 1, 1, generator=g)
        return images, render.sphere_poses(VIEWS).expand(len(indices), -1, -1, -1)

    out = build_cache(dataset, tmp_path / "cache", teacher, view_source=from_disk, **BUILD)
    cache = open_cache(out)
    assert cache.meta["views"]["source"].endswith("from_disk")
    hist = cache.histograms.reshape(OBJECTS, VIEWS, 3, 8)
    assert np.all(hist.max(-1) == 1.0)  # foreground only: each channel of the square falls in one bin
    verify_cache(out)


def test_open_cache_errors(tmp_path, reference):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        open_cache(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a teacher cache"):
        open_cache(tmp_path / "empty")
    out = copy_of(reference, tmp_path)
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "num_objects": 0}))
    with pytest.raises(ValueError, match="empty"):
        open_cache(out)
    meta["views"]["num_views"] = VIEWS + 1
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="embeddings.npy is float16"):
        open_cache(out)
    shutil.copy(reference / "meta.json", out / "meta.json")
    with open(out / "poses.npy", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="poses.npy"):
        open_cache(out)


def _lock_of(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


def _write_lock(out: Path, pid: int) -> Path:
    import socket

    lock = _lock_of(out)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z"}))
    return lock


def test_a_second_build_into_the_same_directory_fails_at_once(tmp_path, dataset, teacher):
    out, seen = tmp_path / "cache", []

    def second_build(index, count):  # runs while the first build holds the lock
        if index == 0:
            with pytest.raises(ValueError) as err:
                build_cache(dataset, out, teacher, resume=True, **BUILD)
            seen.append(str(err.value))

    build_cache(dataset, out, teacher, on_chunk=second_build, **BUILD)
    import socket

    assert len(seen) == 1
    assert seen[0].startswith(f"cache {out} is being built by pid {os.getpid()} on host {socket.gethostname()} since ")
    assert f"(lock file {_lock_of(out)}); wait for it" in seen[0]
    assert not _lock_of(out).exists() and (out / "meta.json").is_file()


def test_the_lock_is_released_when_a_build_fails(tmp_path, dataset, teacher):
    def die(index, count):
        raise Killed

    out = tmp_path / "cache"
    with pytest.raises(Killed):
        build_cache(dataset, out, teacher, on_chunk=die, **BUILD)
    assert not _lock_of(out).exists()


def test_a_live_owner_keeps_its_lock_even_with_resume(tmp_path, dataset, teacher):
    out = tmp_path / "cache"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = _write_lock(out, owner.pid)
        before = lock.read_text()
        for resume in (False, True):
            with pytest.raises(ValueError, match=f"being built by pid {owner.pid} .*wait for it"):
                build_cache(dataset, out, teacher, resume=resume, **BUILD)
        assert lock.read_text() == before and not out.exists()
    finally:
        owner.kill()
        owner.wait()


def test_resume_takes_over_the_lock_of_a_dead_build(tmp_path, reference, dataset, teacher):
    out = tmp_path / "cache"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(out, dead.pid)
    with pytest.raises(ValueError, match=f"pid {dead.pid} .* no longer running; rerun with --resume"):
        build_cache(dataset, out, teacher, **BUILD)
    build_cache(dataset, out, teacher, resume=True, **BUILD)
    assert_same_bytes(out, reference)
    assert not _lock_of(out).exists()


def test_the_default_batch_follows_the_teacher_device(tmp_path, dataset, teacher, reference):
    """No batch_size: the device's default (16 images on a CPU, where a batch stays in the cache), recorded in
    meta.json; the bytes equal a build with any other batch."""
    from crossjepa.teacher.cache import DEFAULT_BATCH_SIZE

    settings = {k: v for k, v in BUILD.items() if k != "batch_size"}
    out = build_cache(dataset, tmp_path / "cache", teacher, **settings)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["build"] == {"batch_size": DEFAULT_BATCH_SIZE["cpu"], "device": "cpu"}
    assert DEFAULT_BATCH_SIZE["cpu"] == 16
    for name in ("embeddings.npy", "poses.npy", "histograms.npy"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
