"""`crossjepa bench` and `crossjepa profile` end to end on the CPU, plus the pieces they are built from."""

import json
import time

import pytest
import torch
from PIL import Image

from crossjepa.cli import main
from crossjepa.perf import env as perf_env
from crossjepa.perf import references as refs
from crossjepa.perf.bench import format_table
from crossjepa.perf.timing import measure

ROW_KEYS = {"suite", "name", "impl", "shape", "backend", "median_ms", "min_ms", "max_ms", "repeats", "throughput",
            "unit", "peak_mem_mb", "mem_kind", "ratio_vs", "ratio", "ratios", "note"}
STAGES = {"data", "tokenizer", "encoder", "predictor", "loss", "backward", "optimizer", "other"}


def test_bench_quick_writes_table_and_json(tmp_path, capsys, one_thread):
    assert main(["-q", "bench", "--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "[train] train step" in printed and "not measured: GPU only" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["bench_cpu_quick.json"]  # no temp files left behind
    result = json.loads((tmp_path / "bench_cpu_quick.json").read_text())
    assert result["complete"] and result["quick"] and result["device"] == "cpu"
    assert {"device_name", "torch", "triton", "numpy", "cpu", "torch_threads", "git", "date"} <= set(result["env"])
    rows = result["rows"]
    assert {r["suite"] for r in rows} == {"ops", "loaders", "train", "cache"}
    assert all(set(r) == ROW_KEYS for r in rows)
    by_key = {(r["name"], r["impl"]): r for r in rows}
    for key in [("fps", "crossjepa"), ("knn", "cdist+topk"), ("loader epoch", "per-file np.load"),
                ("loader epoch", "packed torch"), ("train step", "crossjepa"), ("train step", "eager fp32 reference"),
                ("tokenizer fwd+bwd", "Point-MAE style"), ("cache: build", "build_cache")]:
        row = by_key[key]
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["max_ms"] and row["throughput"] > 0, key
        assert row["peak_mem_mb"] > 0 and row["mem_kind"] == "rss_peak"
    step = by_key[("train step", "crossjepa")]
    assert step["ratio_vs"] == "eager fp32 reference" and step["ratio"] > 0
    assert by_key[("train step", "reference compile bf16")]["median_ms"] is None
    assert by_key[("fps", "pointnet2_ops")]["note"]


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


@pytest.mark.parametrize("argv, needle", [
    (["bench", "--device", "cpu", "--suite", "ops,gpu"], "--suite"),
    (["profile", "--device", "cpu", "--steps", "0"], "--steps"),
])
def test_bad_arguments_give_one_line(argv, needle, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


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
    points = refs.random_clouds(2, 300, torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()))))
    centers, hoods = tok.group(points)
    ref_centers, ref_hoods = refs.reference_tokenizer(tok).group(points)
    torch.testing.assert_close(centers, ref_centers)
    torch.testing.assert_close(hoods.norm(dim=-1), ref_hoods.norm(dim=-1), rtol=1e-4, atol=1e-5)


def test_environment_outside_a_checkout(monkeypatch, tmp_path):
    monkeypatch.setattr(perf_env, "_REPO", tmp_path)
    record = perf_env.environment("cpu")
    assert record["git"] == {"commit": "unknown", "dirty": None}
    json.dumps(record)
    assert "unknown" in perf_env.describe(record)


def test_table_lists_unmeasured_rows():
    row = {"suite": "train", "name": "train step", "impl": "reference compile bf16", "shape": "s", "backend": "b",
           "median_ms": None, "note": "GPU only"}
    assert "not measured: GPU only" in format_table([row])


def test_memory_timeline_gpu_panels(tmp_path):
    from crossjepa.perf.plots import plot_memory_timeline

    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    t = torch.linspace(0, 1, 80).tolist()
    alloc = (1000 + 500 * torch.rand(80, generator=g)).tolist()
    samples = [(ti, 400.0 + 10 * ti, a, a + 256.0) for ti, a in zip(t, alloc)]
    steps = [(0.1 * i, 0.1 * i + 0.09) for i in range(10)]
    spans = [(stage, a + 0.01 * k, a + 0.01 * (k + 1)) for a, _ in steps
             for k, stage in enumerate(["data", "tokenizer", "encoder", "predictor", "backward", "optimizer"])]
    path = plot_memory_timeline(tmp_path / "m.png", samples, steps, spans, "synthetic GPU samples")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[1] > 600  # GPU panel + host panel + stage lane
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_profile_and_bench_on_cuda(tmp_path):
    out = tmp_path / "prof"
    assert main(["-q", "profile", "--device", "cuda", "--steps", "3", "--preset", "tiny", "--batch-size", "16",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step_ms"]["timer"] == "cuda events" and summary["peak_memory"]["cuda_max_allocated_mb"] > 0
    assert summary["stages"]["backward"]["device_ms"] > 0 and (out / "memory_snapshot.pickle").stat().st_size > 0
    assert main(["-q", "bench", "--device", "cuda", "--quick", "--suite", "ops,train", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "bench_cuda_quick.json").read_text())["rows"]
    step = next(r for r in rows if (r["name"], r["impl"]) == ("train step", "crossjepa"))
    assert step["mem_kind"] == "cuda_max_allocated" and step["peak_mem_mb"] > 0
