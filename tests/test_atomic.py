"""atomic.atomic_dir / replace_dir: a directory appears whole or not at all, an old one survives a failure."""

import os

import pytest

from crossjepa.atomic import atomic_dir, replace_dir


class Boom(Exception):
    pass


def _files(path):
    return {p.name: p.read_text() for p in path.iterdir()}


def test_atomic_dir_creates_the_target_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "sub" / "out"
    with atomic_dir(target) as tmp:
        assert tmp.parent == target.parent and tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "a.txt").write_text("new")
        assert not target.exists()
    assert _files(target) == {"a.txt": "new"}
    assert os.listdir(target.parent) == ["out"]


def test_atomic_dir_replaces_an_existing_target_whole(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new")
    assert _files(target) == {"a.txt": "new"}
    assert os.listdir(tmp_path) == ["out"]


def test_a_failure_inside_leaves_the_old_target_and_no_temp(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(Boom):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise Boom
    assert _files(target) == {"a.txt": "old"}
    assert os.listdir(tmp_path) == ["out"]


def test_a_failure_without_a_target_leaves_nothing(tmp_path):
    with pytest.raises(Boom):
        with atomic_dir(tmp_path / "out"):
            raise Boom
    assert os.listdir(tmp_path) == []


def test_a_temp_left_by_a_killed_run_is_cleared(tmp_path):
    leftover = tmp_path / f".out.tmp-{os.getpid()}"
    leftover.mkdir()
    (leftover / "junk").write_text("x")
    with atomic_dir(tmp_path / "out") as tmp:
        assert not any(tmp.iterdir())
    assert os.listdir(tmp_path) == ["out"]


def test_replace_dir_keeps_the_old_version_aside_if_killed_between_its_renames(tmp_path, monkeypatch):
    src, dst = tmp_path / "new", tmp_path / "out"
    for path, text in ((src, "new"), (dst, "old")):
        path.mkdir()
        (path / "a.txt").write_text(text)
    real_replace = os.replace

    def dies_on_second_rename(a, b):
        if a == src:
            raise Boom
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", dies_on_second_rename)
    with pytest.raises(Boom):
        replace_dir(src, dst)
    aside = tmp_path / f".out.old-{os.getpid()}"
    assert not dst.exists() and _files(aside) == {"a.txt": "old"} and _files(src) == {"a.txt": "new"}
    monkeypatch.setattr(os, "replace", real_replace)
    replace_dir(src, dst)  # a retry (e.g. a resumed build) completes it and clears the old version
    assert _files(dst) == {"a.txt": "new"}
    assert os.listdir(tmp_path) == ["out"]
