"""benchmarks/gpu_session.sh, the one command a GPU session runs, end to end here with --quick: every step ends ok
or says why it was skipped, a failed or timed-out step does not stop the next, and the results come back as one
archive within the size the device tool returns. So no GPU time is lost to an error in the script."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SESSION = REPO / "benchmarks" / "gpu_session.sh"
PACK = REPO / "benchmarks" / "pack_results.sh"
STEPS = [
    "wheels",
    "env",
    "build",
    "peers",
    "tests",
    "sync",
    "memcheck",
    "bench_ops",
    "bench_attention",
    "bench_loaders",
    "bench_train",
    "bench_cache",
    "profile",
    "demo",
]
CUDA_STEPS = {"build", "tests", "sync", "memcheck"}
PEERS = {"torch-fps": "torch_fps", "quickfps exact": "torch_quickfps", "quickfps bucket": "torch_quickfps"}
SUITES = ["ops", "attention", "loaders", "train", "cache"]
MIB16 = 16 * 2**20
ROW = re.compile(r"^(\S+)\s+(ok|TIMEOUT|FAIL\(\d+\)|skipped \([^)]*\))\s+(\d+)\s+(\d+)\b")


def session(*args: str, python: str = sys.executable, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python}
    return subprocess.run(
        ["bash", str(SESSION), *args], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


def statuses(summary: str) -> dict[str, str]:
    """step -> status, in the summary's order."""
    rows = [ROW.match(line) for line in summary.splitlines()[1:]]
    return {m.group(1): m.group(2) for m in rows if m}


def expected_status(step: str) -> str:
    if step == "wheels" and not list((REPO / ".whl").glob("*.whl")):
        return "skipped (no .whl/)"
    if step in CUDA_STEPS and not torch.cuda.is_available():
        return "skipped (no CUDA)"
    return "skipped (--quick)" if step == "demo" else "ok"


def test_quick_session_runs_every_step_and_packs_one_archive(tmp_path):
    out, archive = tmp_path / "session", tmp_path / "session.tar.gz"
    run = session("--quick", "--out", str(out), "--archive", str(archive))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    assert statuses(summary) == {step: expected_status(step) for step in STEPS}
    assert list(statuses(summary)) == STEPS  # in the documented order
    assert summary.splitlines()[-1].startswith(f"archive: wrote {archive} ")
    # The step limits of a GPU run (--quick triples them) sum to at most 545 s: with packing, 9.3 minutes.
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s*$", summary, re.MULTILINE)
    assert total and int(total.group(2)) <= 3 * 545

    assert 0 < archive.stat().st_size <= MIB16
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        packed_summary = tar.extractfile("session/summary.txt").read().decode()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        results = {
            suite: json.load(tar.extractfile(f"session/bench/bench_{device}_{suite}_quick.json")) for suite in SUITES
        }
        profile = json.load(tar.extractfile("session/profile/summary.json"))
    ran = [step for step in STEPS if expected_status(step) == "ok"]
    assert {f"session/logs/{step}.log" for step in ran} | {"session/archive_manifest.txt"} <= names
    assert list(statuses(packed_summary)) == STEPS
    for suite, result in results.items():
        assert result["complete"] and result["quick"] and result["suites"] == [suite]
        assert result["options"] == {"case_budget_s": 2.0, "compile": False}
        assert result["rows"] and {r["suite"] for r in result["rows"]} == {suite}
    assert profile["config"]["steps"] == 2 and profile["config"]["batch_size"] == 2
    # The FPS peers users install, where this environment has them (CI installs the peers extra): measured
    # beside ours, each with our indices.
    peers = [name for name, module in PEERS.items() if importlib.util.find_spec(module)]
    ops_rows = results["ops"]["rows"]
    for peer in peers:
        rows = [r for r in ops_rows if r["impl"] == peer]
        assert rows and all(r["median_ms"] and r["agrees"] for r in rows), rows


def test_failed_and_timed_out_steps_are_reported_and_the_rest_still_run(tmp_path):
    # A stand-in interpreter: `-m crossjepa bench` hangs, anything else fails with status 7.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\ncase "$*" in *" bench "*) sleep 60 ;; *) exit 7 ;; esac\n')
    fake.chmod(0o755)
    out = tmp_path / "session"
    run = session(
        "--quick",
        "--steps",
        "env,bench_ops,profile,build",
        "--limit",
        "bench_ops=1",
        "--out",
        str(out),
        python=str(fake),
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    # The fake interpreter has no torch: the session sees no CUDA.
    assert statuses((out / "summary.txt").read_text()) == {
        "env": "FAIL(7)",
        "build": "skipped (no CUDA)",
        "bench_ops": "TIMEOUT",
        "profile": "FAIL(7)",
    }
    with tarfile.open(tmp_path / "session.tar.gz") as tar:
        assert {
            "session/summary.txt",
            "session/logs/env.log",
            "session/logs/bench_ops.log",
            "session/logs/profile.log",
        } <= set(tar.getnames())


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--steps", "build,nope"], "--steps: unknown step 'nope'"),
        (["--limit", "tests"], "--limit: expected STEP=SECONDS"),
        (["--limit", "nope=3"], "--limit: expected STEP=SECONDS"),
        (["--archive-limit", "0"], "--archive-limit: expected a positive number of bytes"),
        (["--frobnicate"], "unknown argument --frobnicate"),
    ],
)
def test_bad_arguments_stop_before_any_step(args, needle, tmp_path):
    run = session(*args, "--out", str(tmp_path / "session"), timeout=60)
    assert run.returncode == 2 and needle in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "session").exists()


def test_a_folder_with_results_is_not_reused(tmp_path):
    (tmp_path / "old.txt").write_text("an earlier run")
    run = session("--out", str(tmp_path), timeout=60)
    assert run.returncode == 2 and "is not empty" in run.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]


def test_pack_leaves_out_the_largest_files_until_the_archive_fits(tmp_path):
    results = tmp_path / "results"
    (results / "profile").mkdir(parents=True)
    (results / "summary.txt").write_text("step status\n")
    (results / "profile" / "trace.json").write_bytes(b"{}" * 50_000)  # 100 kB that compresses to little
    (results / "profile" / "snapshot.pickle").write_bytes(os.urandom(40_000))  # incompressible, over the limit
    (results / "profile" / "huge.pickle").write_bytes(os.urandom(200_000))  # over 8x the limit: not even tried
    (results / "small.bin").write_bytes(os.urandom(4_000))
    archive = tmp_path / "results.tar.gz"
    run = subprocess.run(
        ["bash", str(PACK), str(results), str(archive), "20000"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert archive.stat().st_size <= 20000
    with tarfile.open(archive) as tar:
        assert set(tar.getnames()) == {
            "results/summary.txt",
            "results/archive_manifest.txt",
            "results/profile/trace.json",
            "results/small.bin",
        }
        assert tar.extractfile("results/profile/trace.json").read() == b"{}" * 50_000
        manifest = tar.extractfile("results/archive_manifest.txt").read().decode()
    assert "results/profile/snapshot.pickle (40000 bytes)" in manifest
    assert "results/profile/huge.pickle (200000 bytes)" in manifest and "trace.json" not in manifest


def test_pack_refuses_an_archive_inside_the_folder_and_a_limit_nothing_fits(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.txt").write_text("x" * 100)
    inside = subprocess.run(
        ["bash", str(PACK), str(tmp_path / "r"), str(tmp_path / "r" / "a.tar.gz")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert inside.returncode == 2 and "inside DIR" in inside.stderr
    tiny = subprocess.run(
        ["bash", str(PACK), str(tmp_path / "r"), str(tmp_path / "a.tar.gz"), "10"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert tiny.returncode == 1 and "over the limit of 10" in tiny.stderr
    assert not (tmp_path / "a.tar.gz").exists() and not (tmp_path / "a.tar.gz.partial").exists()
