"""`torchrun -m crossjepa cache`: the processes share the chunks and write one cache, byte for byte the one a
single process builds; after a rank is killed, a resume (with any number of processes) completes it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossjepa.cli import main

REPO = Path(__file__).resolve().parents[1]
FILES = ("embeddings.npy", "poses.npy", "histograms.npy", "stats.npy", "meta.json")
CHUNK = 2  # objects per chunk: 7 chunks for 13 objects, dealt 4 + 3 to two ranks
CACHE = ["-q", "cache", "--data", "synthetic:13", "--teacher", "test_vit", "--teacher-random-init"]
CACHE += ["--image-size", "32", "--views", "2", "--num-points", "256", "--batch-size", "2", "--device", "cpu"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("KILL_RANK", "RANK", "WORLD_SIZE")}
    path = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "CHUNK_SIZE": str(CHUNK), **extra}


def _cache(out: Path, *, nproc: int = 1, port: int = 29531, resume: bool = False, **env) -> int:
    script = str(REPO / "tests" / "torchrun_cache.py")
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={port}"]
    argv = [*launcher, script, *CACHE, "--out", str(out)] + (["--resume"] if resume else [])
    return subprocess.run(argv, env=_env(**env), capture_output=True, text=True, timeout=300).returncode


def _assert_same_bytes(a: Path, b: Path) -> None:
    assert sorted(os.listdir(a)) == sorted(os.listdir(b)) == sorted(FILES)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "cache"
    assert _cache(out) == 0
    return out


def test_two_processes_build_the_bytes_of_one(tmp_path, one_process):
    out = tmp_path / "cache"
    assert _cache(out, nproc=2, port=29532) == 0
    _assert_same_bytes(out, one_process)
    assert main(["-q", "cache", "--verify", str(out)]) == 0
    assert not out.with_name("cache.lock").exists() and not out.with_name("cache.partial").exists()


@pytest.mark.parametrize("resume_nproc", [2, 1])
def test_a_killed_rank_resumes_to_the_same_bytes(tmp_path, one_process, resume_nproc):
    out = tmp_path / "cache"
    assert _cache(out, nproc=2, port=29533, KILL_RANK="1") != 0
    partial = out.with_name("cache.partial")
    recorded = {
        path.name: json.loads(path.read_text())["done"] for path in partial.glob("progress*.json") if path.is_file()
    }
    assert recorded.get("progress-1.json") == [1]  # rank 1 finished its first chunk, then died
    done = sorted(set().union(*recorded.values()))
    assert len(done) < 7 and not (out / "meta.json").exists()
    assert _cache(out, nproc=resume_nproc, port=29534, resume=True) == 0
    _assert_same_bytes(out, one_process)
