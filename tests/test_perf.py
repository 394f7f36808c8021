"""`crossjepa bench`, its pytest-benchmark twin and `crossjepa profile` end to end on the CPU, plus the pieces
they are built from."""

import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from crossjepa.cli import main
from crossjepa.perf import bench as perf_bench
from crossjepa.perf import env as perf_env
from crossjepa.perf import references as refs
from crossjepa.perf.bench import format_table
from crossjepa.perf.inputs import ball_clouds
from crossjepa.perf.timing import measure

REPO = Path(__file__).resolve().parents[1]


def _under_load():
    """benchmarks/under_load.py (a script, not part of the package), imported from its file."""
    spec = importlib.util.spec_from_file_location("under_load", REPO / "benchmarks" / "under_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


under_load = _under_load()
SPIN, spinners = under_load.SPIN, under_load.spinners
ROW_KEYS = {
    "suite",
    "name",
    "impl",
    "shape",
    "backend",
    "threads",
    "load",
    "median_ms",
    "min_ms",
    "max_ms",
    "repeats",
    "throughput",
    "unit",
    "peak_mem_mb",
    "mem_kind",
    "ratio_vs",
    "ratio",
    "ratios",
    "target",
    "meets_target",
    "agrees",
    "note",
}
RESULT_KEYS = {"schema", "runner", "device", "quick", "suites", "loads", "options", "complete", "env", "wall_s", "rows"}
STAGES = {"data", "tokenizer", "encoder", "predictor", "loss", "backward", "optimizer", "other"}
CPU_OPS_PAIRS = {
    ("fps", "crossjepa", "fpsample loop", 2, 2.0),
    ("fps", "crossjepa", "fpsample", 1, 5.0),
    ("knn", "crossjepa", "cdist+topk", 2, 3.0),
    ("group", "crossjepa", "cdist+topk+gather", 2, None),
    ("fps+knn", "crossjepa", "ref FPS + cdist+topk", 2, None),
}
FPS_PEERS = ("torch-fps", "quickfps exact", "quickfps bucket")


def spinning_children() -> set[int]:
    """Live child processes of this one running the spinner program."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and SPIN.encode() in cmdline:
            found.add(int(entry.name))
    return found


def _assert_ratios_and_throughputs_agree_with_the_medians(rows):
    """ratio = the reference's median / this median, and throughput x median is the same work for every impl
    of one case (same suite, name, shape and load)."""
    measured = {(r["suite"], r["name"], r["shape"], r["load"], r["impl"]): r for r in rows if r["median_ms"]}
    compared = 0
    for (suite, name, shape, load, impl), row in measured.items():
        for ref, ratio in row["ratios"].items():
            other = measured[(suite, name, shape, load, ref)]
            assert ratio == pytest.approx(other["median_ms"] / row["median_ms"]), (name, impl, ref)
            assert row["throughput"] * row["median_ms"] == pytest.approx(other["throughput"] * other["median_ms"]), (
                name,
                impl,
                ref,
            )
            compared += 1
        if row["ratio_vs"] is not None:
            assert row["ratio"] == row["ratios"][row["ratio_vs"]], (name, impl)
    assert compared > 0


def test_bench_quick_writes_table_and_json(tmp_path, capsys, monkeypatch, one_thread):
    monkeypatch.setenv("GOMP_SPINCOUNT", "12345")  # read at libgomp load: recorded here, no effect on timing
    assert main(["-q", "bench", "--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "[train] train step" in printed and "not measured: GPU only" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["bench_cpu_quick.json"]  # no temp files left behind
    result = json.loads((tmp_path / "bench_cpu_quick.json").read_text())
    assert set(result) == RESULT_KEYS and result["schema"] == perf_bench.SCHEMA
    assert result["complete"] and result["quick"] and result["device"] == "cpu" and result["loads"] == [0]
    env = result["env"]
    assert {
        "device_name",
        "torch",
        "triton",
        "numpy",
        "fpsample",
        "torch_fps",
        "torch_quickfps",
        "python",
        "cpu",
        "torch_threads",
        "git",
        "date",
        "threading_env",
    } <= set(env)
    assert env["threading_env"]["GOMP_SPINCOUNT"] == "12345" and set(env["git"]) == {"commit", "dirty"}
    rows = result["rows"]
    assert {r["suite"] for r in rows} == {"ops", "attention", "loaders", "train", "cache", "probe"}
    assert all(set(r) == ROW_KEYS and r["load"] == 0 for r in rows)
    ops_rows = [r for r in rows if r["suite"] == "ops"]
    assert {
        (r["name"], r["impl"], r["ratio_vs"], r["threads"], r["target"]) for r in ops_rows if r["ratio_vs"]
    } == CPU_OPS_PAIRS
    assert all(r["agrees"] for r in ops_rows if r["ratio_vs"])  # FPS: fpsample's indices exactly
    assert all(r["meets_target"] == (r["ratio"] >= r["target"]) for r in ops_rows if r["target"])
    by_key = {(r["name"], r["impl"]): r for r in rows}
    # The rows' RSS peaks are this process's (in MB): within its lifetime peak (getrusage, KiB on Linux; /proc
    # and getrusage count resident pages slightly differently).
    lifetime_peak_mb = 1.02 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for key in [
        ("fps", "crossjepa"),
        ("knn", "cdist+topk"),
        ("loader epoch", "per-file np.load"),
        ("loader epoch", "packed torch"),
        ("train step", "crossjepa"),
        ("train step", "eager fp32 reference"),
        ("tokenizer fwd+bwd", "Point-MAE style"),
        ("cache: build tf_efficientnet_lite0", "optimized"),
        ("cache: build tf_efficientnet_lite0", "previous"),
    ]:
        row = by_key[key]
        assert row["min_ms"] <= row["median_ms"] <= row["max_ms"], key
        assert row["mem_kind"] == "rss_peak" and row["peak_mem_mb"] <= lifetime_peak_mb, key
    _assert_ratios_and_throughputs_agree_with_the_medians(rows)
    step = by_key[("train step", "crossjepa")]
    assert step["ratio_vs"] == "eager fp32 reference" and step["ratio"] == pytest.approx(
        by_key[("train step", "eager fp32 reference")]["median_ms"] / step["median_ms"]
    )
    assert by_key[("train step", "reference compile bf16")]["median_ms"] is None
    for name in ("cache: render", "cache: teacher tf_efficientnet_lite0", "cache: build tf_efficientnet_lite0"):
        assert by_key[(name, "optimized")]["ratio_vs"] == "previous", name
    assert by_key[("attention fwd+bwd", "triton fused")]["note"] == "needs CUDA"


def _quick_ops_rows(tmp_path) -> list[dict]:
    from crossjepa.perf.suites import Settings, run_suite

    return run_suite("ops", Settings(torch.device("cpu"), True, tmp_path))


def test_fps_peers_run_on_the_same_inputs_and_return_our_indices(tmp_path, one_thread):
    """torch-fps and torch-quickfps (the `peers` extra), when installed: a row each beside every FPS case, measured
    on the same clouds and threads, each checked to return our indices; our row's speed-ups include them. The
    fused FPS + kNN of torch-fps finds our centers and neighbours."""
    pytest.importorskip("torch_fps")
    pytest.importorskip("torch_quickfps")
    rows = _quick_ops_rows(tmp_path)
    fps = [r for r in rows if r["name"] == "fps"]
    shapes = {r["shape"] for r in fps}
    assert len(shapes) == 2
    for shape in shapes:
        by_impl = {r["impl"]: r for r in fps if r["shape"] == shape}
        assert set(FPS_PEERS) <= set(by_impl)
        for peer in FPS_PEERS:
            row = by_impl[peer]
            assert row["median_ms"] > 0 and row["agrees"] is True and row["threads"] == by_impl["crossjepa"]["threads"]
        assert set(FPS_PEERS) <= set(by_impl["crossjepa"]["ratios"])
    fused = next(r for r in rows if r["name"] == "fps+knn" and r["impl"] == "torch-fps fused")
    assert fused["median_ms"] > 0 and fused["agrees"] is True and "torch-fps" in fused["backend"]
    _assert_ratios_and_throughputs_agree_with_the_medians(rows)


def test_a_missing_peer_gets_a_row_that_says_so(tmp_path, monkeypatch, one_thread):
    for module in ("torch_fps", "torch_quickfps"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    rows = _quick_ops_rows(tmp_path)
    missing = [r for r in rows if r["impl"] in (*FPS_PEERS, "torch-fps fused")]
    assert len(missing) == 2 * len(FPS_PEERS) + 1
    for row in missing:
        assert row["median_ms"] is None and row["agrees"] is None
        assert row["note"].endswith("not installed (pip install 'crossjepa[peers]')"), row
    ours = [r for r in rows if r["impl"] == "crossjepa" and r["name"] in ("fps", "fps+knn")]
    assert all(r["median_ms"] > 0 and r["agrees"] for r in ours)
    assert all(not set(r["ratios"]) & {*FPS_PEERS, "torch-fps fused"} for r in ours)
    assert "not measured: torch-fps not installed" in format_table(rows)


def test_pytest_benchmark_files_write_the_same_schema(tmp_path):
    out = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks/bench_ops.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "--bench-device",
            "cpu",
            "--bench-quick",
            "--bench-out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((out / "pytest_cpu_ops_quick.json").read_text())
    assert set(result) == RESULT_KEYS and result["schema"] == perf_bench.SCHEMA
    assert result["runner"] == "pytest-benchmark" and result["complete"] and result["suites"] == ["ops"]
    rows = result["rows"]
    assert all(set(r) == ROW_KEYS for r in rows)
    measured = [r for r in rows if r["median_ms"] is not None]
    assert all(r["repeats"] == 2 and r["min_ms"] <= r["median_ms"] <= r["max_ms"] for r in measured)
    # What did not run is a peer this environment lacks (the peers extra), and its row says so.
    assert all("not installed" in r["note"] for r in rows if r["median_ms"] is None)
    assert {
        (r["name"], r["impl"], r["ratio_vs"], r["threads"], r["target"]) for r in rows if r["ratio_vs"]
    } == CPU_OPS_PAIRS
    assert all(r["agrees"] for r in rows if r["ratio_vs"])
    _assert_ratios_and_throughputs_agree_with_the_medians(rows)


def test_load_levels_run_beside_spinners_that_are_killed(tmp_path, monkeypatch, capsys, one_thread):
    seen = []
    real_run_suite = perf_bench.run_suite

    def run_suite(name, settings, on_row=None):
        seen.append((settings.load, len(spinning_children())))
        return real_run_suite(name, settings, on_row)

    monkeypatch.setattr(perf_bench, "run_suite", run_suite)
    argv = ["-q", "--device", "cpu", "--quick", "--suite", "ops", "--load", "0,1", "--out", str(tmp_path)]
    assert under_load.main(argv) == 0
    assert seen == [(0, 0), (1, 1)] and not spinning_children()
    summary = capsys.readouterr().out.split("speed-up over the reference by load")[1]
    assert "crossjepa vs fpsample (target 5x):  load 0: " in summary and "x  load 1: " in summary
    result = json.loads((tmp_path / "bench_cpu_ops_quick.json").read_text())
    assert result["loads"] == [0, 1]
    rows = {load: [r for r in result["rows"] if r["load"] == load] for load in (0, 1)}
    assert [(r["name"], r["impl"]) for r in rows[0]] == [(r["name"], r["impl"]) for r in rows[1]]
    assert all(r["ratio"] > 0 for r in rows[1] if r["ratio_vs"])  # compared with the peer at the same load


def test_spinners_are_killed_when_the_run_fails(tmp_path, monkeypatch, capsys):
    def failing(name, settings, on_row=None):
        assert len(spinning_children()) == settings.load == 2
        raise RuntimeError("suite failed")

    monkeypatch.setattr(perf_bench, "run_suite", failing)
    with pytest.raises(RuntimeError, match="suite failed"):
        under_load.main(["--device", "cpu", "--suite", "ops", "--load", "2", "--out", str(tmp_path)])
    assert not spinning_children()
    with pytest.raises(KeyboardInterrupt):
        with spinners(1) as pids:
            assert spinning_children() == set(pids)
            raise KeyboardInterrupt
    with pytest.raises(SystemExit):  # a `kill` of the benchmark: SIGTERM unwinds through the cleanup too
        with spinners(1):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert not spinning_children()


def test_profile_cpu_writes_trace_table_png_summary(tmp_path, capsys, one_thread):
    out = tmp_path / "prof"
    assert main(["-q", "profile", "--device", "cpu", "--steps", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "per-stage breakdown" in printed and "backward" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["steps"] == 5 and summary["config"]["preset"] == "tiny"
    assert len(summary["step_ms"]["all"]) == 5 and summary["objects_per_s"] > 0
    assert set(summary["stages"]) == STAGES
    assert all(summary["stages"][s]["host_ms"] > 0 for s in STAGES - {"other"})
    assert summary["peak_memory"]["rss_mb"] > 0 and summary["top_ops"][0]["name"]
    assert set(summary["files"].values()) == {p.name for p in out.iterdir()}
    trace = json.loads((out / "trace.json").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"tokenizer", "encoder", "predictor", "backward"} <= names
    assert "aten::" in (out / "top_ops.txt").read_text()
    with Image.open(out / "memory_timeline.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 500 and image.size[1] > 300


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["bench", "--device", "cpu", "--suite", "ops,gpu"], "suite: expected"),
        (["bench", "--device", "cpu", "--suite", "nope"], "suite: expected"),
        (["profile", "--device", "cpu", "--steps", "0"], "steps: expected"),
        (["bench", "--device", "cpu", "--case-budget", "-1"], "case_budget: expected"),
    ],
)
def test_bad_arguments_give_one_line(argv, needle, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("load", ["-1", "0,x"])
def test_bad_load_levels_give_one_line(load, capsys):
    assert under_load.main(["--device", "cpu", "--load", load]) == 2
    err = capsys.readouterr().err.strip()
    assert "--load: expected" in err and len(err.splitlines()) == 1


def test_bench_itself_runs_at_load_zero_only(tmp_path):
    with pytest.raises(ValueError, match="loads: expected"):
        perf_bench.run_bench(torch.device("cpu"), ["ops"], True, tmp_path, loads=[0, 1])


def test_measure_counts_calls_and_orders_stats():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.001 * (1 + len(calls) % 3))

    timing = measure(fn, "cpu", warmup=2, repeats=5)
    assert len(calls) == 7 and len(timing.samples_ms) == 5
    assert 1.0 <= timing.min_ms <= timing.median_ms <= timing.max_ms
    assert timing.peak_mem_mb > 0 and timing.summary()["repeats"] == 5
    with pytest.raises(ValueError, match="repeats"):
        measure(fn, "cpu", repeats=0)


def test_measure_stops_a_slow_case_at_its_budget():
    calls = []

    def fn():  # 50 ms a call: 3 + 100 calls would take 5 s
        calls.append(1)
        time.sleep(0.05)

    timing = measure(fn, "cpu", warmup=3, repeats=100, budget_s=0.5)
    # Warm-up stops once it has used a quarter of the budget; the timed calls fit what is left of it.
    assert 1 <= len(timing.samples_ms) <= 7 and timing.requested == 100
    assert 1 <= len(calls) - len(timing.samples_ms) <= 3
    assert all(t >= 50 for t in timing.samples_ms)
    with pytest.raises(ValueError, match="budget_s"):
        measure(fn, "cpu", budget_s=0)


def test_run_case_records_how_many_repeats_the_budget_let_run(tmp_path):
    from crossjepa.perf.case import Case, Settings, returning
    from crossjepa.perf.suites import run_case

    case = Case("sleep", "50 ms", "-", "time.sleep", 1, "calls/s", returning(lambda: time.sleep(0.05)), repeats=(1, 50))
    row = run_case("test", case, Settings(torch.device("cpu"), False, tmp_path, budget_s=0.3))
    assert 1 <= row["repeats"] < 50 and row["note"] == f"{row['repeats']} of 50 repeats in the 0.3 s case budget"
    fast = Case("noop", "noop", "-", "python", 1, "calls/s", returning(lambda: None), repeats=(1, 5))
    row = run_case("test", fast, Settings(torch.device("cpu"), False, tmp_path, budget_s=0.3))
    assert row["repeats"] == 5 and row["note"] == ""


def test_bench_reports_each_case_and_keeps_the_rows_of_a_run_cut_short(tmp_path, monkeypatch, capsys, one_thread):
    from crossjepa.perf import suites

    real_ops = suites.SUITES["ops"]

    def two_cases_then_fail(settings):
        yield from list(real_ops(settings))[:2]
        raise RuntimeError("the machine went away")

    monkeypatch.setitem(suites.SUITES, "ops", two_cases_then_fail)
    assert (
        main(
            [
                "bench",
                "--device",
                "cpu",
                "--quick",
                "--suite",
                "ops",
                "--case-budget",
                "5",
                "--compile",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "the machine went away" in err
    progress = [line for line in err.splitlines() if line.startswith("[ops] fps | ")]
    assert len(progress) == 2 and all(": median " in line and " ms of 2 repeats (" in line for line in progress)
    result = json.loads((tmp_path / "bench_cpu_ops_quick.json").read_text())
    assert not result["complete"] and result["options"] == {"case_budget_s": 5.0, "compile": True}
    assert [r["impl"] for r in result["rows"]] == ["crossjepa", "fpsample loop"]
    assert all(r["median_ms"] > 0 for r in result["rows"])


def test_reference_model_matches_ours():
    from crossjepa.models import build

    torch.manual_seed(0)
    model = build("tiny").eval()
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    batch = refs.synthetic_batch(model, 3, 2, "cpu", g, num_points=256)
    reference = refs.as_reference(model)
    assert type(reference.encoder.tokenizer) is refs.ReferenceTokenizer
    assert type(model.encoder.tokenizer) is not refs.ReferenceTokenizer  # the original is left alone
    with torch.no_grad():
        ours = model(batch["points"], batch["poses"], batch["histograms"])
        theirs = reference(batch["points"], batch["poses"], batch["histograms"])
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_point_mae_grouping_finds_the_same_neighbours():
    tok = refs.point_mae_tokenizer(__import__("crossjepa.models", fromlist=["build"]).build("tiny").encoder.tokenizer)
    points = ball_clouds(2, 300, torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()))))
    centers, hoods = tok.group(points)
    ref_centers, ref_hoods = refs.reference_tokenizer(tok).group(points)
    torch.testing.assert_close(centers, ref_centers)
    torch.testing.assert_close(hoods.norm(dim=-1), ref_hoods.norm(dim=-1), rtol=1e-4, atol=1e-5)


def test_environment_records_the_commit_of_a_source_checkout_only(monkeypatch, tmp_path):
    repo = tmp_path / "repo"
    (repo / "site-packages").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setattr(perf_env, "_SOURCE", repo)  # run from the checkout itself
    assert perf_env.environment("cpu")["git"] == {"commit": head, "dirty": False}
    monkeypatch.setattr(perf_env, "_SOURCE", repo / "site-packages")  # installed where a repository holds it
    record = perf_env.environment("cpu")
    assert record["git"] == {"commit": "unknown", "dirty": None}
    json.dumps(record)
    assert "unknown" in perf_env.describe(record)


def test_table_lists_unmeasured_rows():
    row = {
        "suite": "train",
        "name": "train step",
        "impl": "reference compile bf16",
        "shape": "s",
        "backend": "b",
        "median_ms": None,
        "note": "GPU only",
    }
    assert "not measured: GPU only" in format_table([row])


def test_memory_timeline_gpu_panels(tmp_path):
    from crossjepa.perf.plots import plot_memory_timeline

    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    t = torch.linspace(0, 1, 80).tolist()
    alloc = (1000 + 500 * torch.rand(80, generator=g)).tolist()
    samples = [(ti, 400.0 + 10 * ti, a, a + 256.0) for ti, a in zip(t, alloc)]
    steps = [(0.1 * i, 0.1 * i + 0.09) for i in range(10)]
    spans = [
        (stage, a + 0.01 * k, a + 0.01 * (k + 1))
        for a, _ in steps
        for k, stage in enumerate(["data", "tokenizer", "encoder", "predictor", "backward", "optimizer"])
    ]
    path = plot_memory_timeline(tmp_path / "m.png", samples, steps, spans, "synthetic GPU samples")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[1] > 600  # GPU panel + host panel + stage lane
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_profile_and_bench_on_cuda(tmp_path):
    out = tmp_path / "prof"
    assert (
        main(
            [
                "-q",
                "profile",
                "--device",
                "cuda",
                "--steps",
                "3",
                "--preset",
                "tiny",
                "--batch-size",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step_ms"]["timer"] == "cuda events" and summary["peak_memory"]["cuda_max_allocated_mb"] > 0
    assert summary["stages"]["backward"]["device_ms"] > 0 and (out / "memory_snapshot.pickle").stat().st_size > 0
    assert (
        main(["-q", "bench", "--device", "cuda", "--quick", "--suite", "ops,attention,train", "--out", str(tmp_path)])
        == 0
    )
    rows = json.loads((tmp_path / "bench_cuda_ops_attention_train_quick.json").read_text())["rows"]
    assert all(r["agrees"] for r in rows if r["suite"] in ("ops", "attention") and r["ratio_vs"])
    assert next(r for r in rows if r["impl"] == "triton fused")["ratio"] > 0
    step = next(r for r in rows if (r["name"], r["impl"]) == ("train step", "crossjepa"))
    assert step["mem_kind"] == "cuda_max_allocated" and step["peak_mem_mb"] > 0
