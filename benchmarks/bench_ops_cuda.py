"""CUDA point ops against their peers on one GPU, every peer measured in the same run (skips without CUDA).

    pytest benchmarks/bench_ops_cuda.py --benchmark-json=/tmp/ops_cuda_run.json
    python benchmarks/save_results.py /tmp/ops_cuda_run.json --name ops_cuda_h100

FPS, float32, (B, N, M) = (128, 1024, 64) (the tokenizer), (32, 8192, 1024) (packing), (1, 200000, 4096) (one
large cloud): crossjepa (the CUDA kernel), the torch reference, torch.compile of the reference's per-iteration
step (compiling the whole loop would unroll it M times), pointnet2_ops furthest_point_sample.
kNN + grouping, 128 clouds x 64 centers over N = 1024 points, k = 32, bf16 and fp32 (output in that dtype):
crossjepa group, cdist + topk + gather (crossjepa.perf.references.cdist_group) and its torch.compile, the torch
reference, and cdist + topk with pointnet2_ops gather_operation. A pointnet2_ops peer is used when
`pointnet2_ops.pointnet2_utils` imports; otherwise its entry is skipped and every entry says why. Our ops and
references run with check_finite=False (the NaN scan syncs the host; no peer has one).

Per implementation, crossjepa.perf.timing.measure gives the CUDA-event median per call (warm-up first, then events
around each call), cycling over INPUT_SETS fresh random clouds. pytest-benchmark also times rounds of
`calls_per_round` calls ending in a synchronize, the same count for every implementation of a group, so
save_results.py's ratios compare. extra_info: shape, dtype, impl and peer name, backend, event timing,
speedup_vs (other implementation's median / this one's, for each one of the group), us_per_iteration (FPS:
median / M), agreement with the reference, the environment (GPU, driver, CUDA, torch, triton, commit), and
role "ours"/"peer" (the Done-when pair: pointnet2_ops for FPS, cdist + topk + gather for grouping) with
target_speedup on ours.
"""

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)

from crossjepa import ops  # noqa: E402
from crossjepa.ops.reference import squared_distances  # noqa: E402
from crossjepa.perf.env import environment  # noqa: E402
from crossjepa.perf.references import cdist_group, cdist_knn, pointnet2_fps, random_clouds  # noqa: E402
from crossjepa.perf.timing import measure, sync  # noqa: E402

FPS_SHAPES = [(128, 1024, 64), (32, 8192, 1024), (1, 200_000, 4096)]  # (B, N, M)
GROUP_SHAPE = (128, 64, 1024, 32)  # (B, M centers, N points, k)
GROUP_DTYPES = [torch.bfloat16, torch.float32]
INPUT_SETS = 3
TARGET_SPEEDUP = 3.0
EVENT_BUDGET_MS = 300.0  # CUDA-event timing per implementation (between 5 and 200 calls)
ROUND_BUDGET_MS = 600.0  # pytest-benchmark rounds per implementation (between 3 and 20 rounds)
MIN_ROUND_MS = 2.0  # calls per round so that the fastest implementation's round lasts this long
DEVICE = "cuda"
COMPILE = os.environ.get("CROSSJEPA_BENCH_COMPILE", "1") != "0"  # 0: skip the torch.compile peers (slow start)


def _pointnet2_gather():
    try:
        from pointnet2_ops.pointnet2_utils import gather_operation
    except (ImportError, OSError) as exc:
        return None, f"pointnet2_ops not installed ({exc})"
    return gather_operation, ""


def _fps_step(pts, dist, current):
    """One iteration of the reference's FPS loop (full clouds): mark the chosen point, fold it in, pick next."""
    chosen = pts.gather(1, current[:, None, None].expand(-1, 1, 3))
    dist = torch.minimum(dist.scatter(1, current[:, None], -1.0), squared_distances(pts, chosen))
    return dist, dist.argmax(dim=1)


_compiled_step = torch.compile(_fps_step, dynamic=False, fullgraph=True) if COMPILE else None


def compiled_reference_fps(points, m):
    pts = points.float()
    dist = torch.full(pts.shape[:2], float("inf"), device=pts.device)
    current = torch.zeros(pts.shape[0], dtype=torch.int64, device=pts.device)
    out = torch.empty(pts.shape[0], m, dtype=torch.int64, device=pts.device)
    for i in range(m):
        out[:, i] = current
        dist, current = _compiled_step(pts, dist, current)
    return out


def pointnet2_group(gather_operation):
    """cdist + topk kNN, then pointnet2_ops gather_operation (float32, channels first) on the flattened indices."""
    def group(points, centers, k):
        b, m = centers.shape[:2]
        _, idx = cdist_knn(centers, points, k)
        feats = points.float().transpose(1, 2).contiguous()
        picked = gather_operation(feats, idx.reshape(b, m * k).int()).reshape(b, 3, m, k)
        return (picked.permute(0, 2, 3, 1) - centers.float().unsqueeze(2)).to(points.dtype), idx
    return group


def fps_impls(m):
    """name -> (fn(points) or None, why not, peer name)."""
    pn2, why = pointnet2_fps()
    return {
        "crossjepa": (lambda p: ops.farthest_point_sample(p, m, check_finite=False), "",
                      "crossjepa.ops.farthest_point_sample"),
        "torch_reference": (lambda p: ops.farthest_point_sample_reference(p, m, check_finite=False), "",
                            "crossjepa.ops.farthest_point_sample_reference"),
        "torch_compile_reference": (None if not COMPILE else lambda p: compiled_reference_fps(p, m),
                                    "" if COMPILE else "CROSSJEPA_BENCH_COMPILE=0",
                                    "torch.compile of the reference's per-iteration step"),
        "pointnet2_ops": (None if pn2 is None else lambda p: pn2(p, m), why,
                          "pointnet2_ops.pointnet2_utils.furthest_point_sample"),
    }


def group_impls(k):
    gather, why = _pointnet2_gather()
    pn2 = None if gather is None else pointnet2_group(gather)
    compiled = torch.compile(cdist_group, dynamic=False) if COMPILE else None
    return {
        "crossjepa": (lambda p, c: ops.group(p, c, k, check_finite=False), "", "crossjepa.ops.group"),
        "torch_cdist_topk_gather": (lambda p, c: cdist_group(p, c, k), "", "torch.cdist + topk + gather"),
        "torch_compile_cdist_topk_gather": (None if compiled is None else lambda p, c: compiled(p, c, k),
                                            "" if COMPILE else "CROSSJEPA_BENCH_COMPILE=0",
                                            "torch.compile(cdist + topk + gather)"),
        "torch_reference": (lambda p, c: ops.group_reference(p, c, k, check_finite=False), "",
                            "crossjepa.ops.group_reference"),
        "pointnet2_ops_gather": (None if pn2 is None else lambda p, c: pn2(p, c, k), why,
                                 "torch.cdist + topk + pointnet2_ops gather_operation"),
    }


FPS_IMPLS = ["crossjepa", "torch_reference", "torch_compile_reference", "pointnet2_ops"]
GROUP_IMPLS = ["crossjepa", "torch_cdist_topk_gather", "torch_compile_cdist_topk_gather", "torch_reference",
               "pointnet2_ops_gather"]


def _cycling(fn, sets):
    state = {"i": 0}

    def call():
        args = sets[state["i"] % len(sets)]
        state["i"] += 1
        return fn(*args)
    return call


def _time(call):
    """CUDA-event timing of call(): one warm-up (compiles) and one probe call size the repeat count."""
    probe = measure(call, DEVICE, warmup=1, repeats=1).median_ms
    repeats = int(min(200, max(5, EVENT_BUDGET_MS / max(probe, 1e-3))))
    return measure(call, DEVICE, warmup=10 if probe < 20 else 2, repeats=repeats)


def _measure_all(impls, sets, check):
    """Every implementation on the same input sets: {name: result dict}, plus speedups and calls per round."""
    results = {}
    for name, (fn, why, peer) in impls.items():
        if fn is None:
            results[name] = {"peer": peer, "unavailable": why}
            continue
        try:
            agreement = check(fn(*sets[0]))
            timing = _time(_cycling(fn, sets))
        except (RuntimeError, ValueError) as exc:  # a peer that cannot take these inputs is a result
            results[name] = {"peer": peer, "unavailable": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            continue
        results[name] = {"peer": peer, "event_ms": timing.summary(), "median_ms": timing.median_ms, **agreement}
        torch.cuda.empty_cache()
    medians = {n: r["median_ms"] for n, r in results.items() if "median_ms" in r}
    calls = max(1, min(100, math.ceil(MIN_ROUND_MS / min(medians.values()))))
    for name, ms in medians.items():
        results[name]["speedup_vs"] = {other: theirs / ms for other, theirs in medians.items() if other != name}
    return {"results": results, "fn": {name: fn for name, (fn, _, _) in impls.items()}, "sets": sets,
            "calls_per_round": calls,
            "unavailable": {n: r["unavailable"] for n, r in results.items() if "unavailable" in r}}


@pytest.fixture(scope="module")
def env():
    return environment(DEVICE)


@pytest.fixture(scope="module", params=FPS_SHAPES, ids=lambda s: f"B{s[0]}_N{s[1]}_M{s[2]}")
def fps_measured(request):
    b, n, m = request.param
    sets = [(random_clouds(b, n, torch.Generator().manual_seed(seed)).to(DEVICE),) for seed in range(INPUT_SETS)]
    expected = ops.farthest_point_sample_reference(sets[0][0], m, check_finite=False)

    def check(idx):
        return {"matches_reference": bool(torch.equal(idx.long(), expected))}
    out = _measure_all(fps_impls(m), sets, check)
    out.update(shape={"B": b, "N": n, "M": m}, dtype="float32", group=f"fps B={b} N={n} M={m} fp32",
               iterations=m, ours_role="crossjepa", peer_role="pointnet2_ops")
    return out


@pytest.fixture(scope="module", params=GROUP_DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def group_measured(request):
    b, m, n, k = GROUP_SHAPE
    dtype = request.param
    sets = []
    for seed in range(INPUT_SETS):
        points = random_clouds(b, n, torch.Generator().manual_seed(seed)).to(DEVICE, dtype)
        centers = points[:, torch.randperm(n, generator=torch.Generator().manual_seed(100 + seed))[:m]]
        sets.append((points, centers.contiguous()))
    _, expected = ops.group_reference(*sets[0], k, check_finite=False)
    expected = expected.sort(-1).values

    def check(result):
        out, idx = result
        same = (idx.sort(-1).values == expected).all(-1).float().mean().item()
        return {"out_dtype": str(out.dtype), "neighbour_sets_equal_to_reference": same}
    out = _measure_all(group_impls(k), sets, check)
    name = str(dtype).removeprefix("torch.")
    out.update(shape={"B": b, "M": m, "N": n, "k": k}, dtype=name, group=f"knn+group B={b} M={m} N={n} k={k} {name}",
               ours_role="crossjepa", peer_role="torch_cdist_topk_gather")
    return out


def _run(benchmark, measured, impl, env):
    result = measured["results"][impl]
    if "unavailable" in result:
        pytest.skip(f"{impl}: {result['unavailable']}")
    fn, sets, calls = measured["fn"][impl], measured["sets"], measured["calls_per_round"]
    call = _cycling(fn, sets)

    def rounds():
        for _ in range(calls):
            call()
        sync(torch.device(DEVICE))

    role = "ours" if impl == measured["ours_role"] else "peer" if impl == measured["peer_role"] else "other"
    benchmark.group = measured["group"]
    benchmark.extra_info.update(
        impl=impl, role=role, shape=measured["shape"], dtype=measured["dtype"], calls_per_round=calls,
        peers_unavailable=measured["unavailable"], env=env, **result)
    if role == "ours":
        benchmark.extra_info.update(target_speedup=TARGET_SPEEDUP, backend=ops.backend(
            "farthest_point_sample" if "iterations" in measured else "group", DEVICE))
    if "iterations" in measured:
        benchmark.extra_info["us_per_iteration"] = result["median_ms"] * 1e3 / measured["iterations"]
    n_rounds = int(min(20, max(3, ROUND_BUDGET_MS / (calls * result["median_ms"]))))
    benchmark.pedantic(rounds, rounds=n_rounds, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("impl", FPS_IMPLS)
def test_fps(benchmark, fps_measured, impl, env):
    _run(benchmark, fps_measured, impl, env)


@pytest.mark.parametrize("impl", GROUP_IMPLS)
def test_knn_group(benchmark, group_measured, impl, env):
    _run(benchmark, group_measured, impl, env)
