"""Fused Triton attention forward+backward vs torch SDPA on the GPU (skips without CUDA or triton).

Shape of the point encoder: B=512, H=6, L=65 (64 patches + cls), d=64, bf16. Peers, all measured in the same
run on the same inputs: SDPA with torch's own backend choice, SDPA forced to each backend (flash, efficient,
cudnn, math; a backend that refuses the inputs is skipped with its reason), torch.compile of the float
reference, and the dispatcher (`crossjepa.kernels.attention`). With and without a key-padding mask.

    pytest benchmarks/bench_attention.py --benchmark-json=benchmarks/results/attention_<gpu>.json

pytest-benchmark times rounds of STEPS fwd+bwd steps ending in a synchronize (wall clock). Each entry's
extra_info also holds the CUDA-event median per step (triton.testing.do_bench, L2 flushed, warm-up), the
best SDPA backend's median and the speedup over it, the relative error of out/dq/dk/dv against float64, and
the GPU, driver, CUDA, torch and triton versions and the commit.
"""

import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    pytest.skip("needs CUDA", allow_module_level=True)
triton = pytest.importorskip("triton")
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from crossjepa.kernels import attention  # noqa: E402
from crossjepa.kernels.attention_triton import fused_attention  # noqa: E402

B, H, L, D = 512, 6, 65, 64
DTYPE = torch.bfloat16
INPUT_SETS = 3  # cycled, so no step finds its inputs in L2 from the step before
STEPS = 10
SDPA_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                 "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def _sdpa(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None, None, :])


def _forced(backend):
    def fn(q, k, v, mask):
        with sdpa_kernel(backend):
            return _sdpa(q, k, v, mask)
    return fn


def _naive(q, k, v, mask):
    s = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
    return (torch.softmax(s, -1) @ v.float()).to(q.dtype)


IMPLS = {"triton_fused": fused_attention, "sdpa_default": _sdpa,
         **{f"sdpa_{name}": _forced(b) for name, b in SDPA_BACKENDS.items()},
         "torch_compile_reference": torch.compile(_naive), "dispatch_auto": attention}


def _inputs(masked, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, D, device="cuda", dtype=DTYPE, generator=g).requires_grad_() for _ in range(3))
    mask = None
    if masked:  # realistic padding: every object keeps its cls token and a random number of patches
        lengths = torch.randint(L // 2, L + 1, (B,), device="cuda", generator=g)
        mask = torch.arange(L, device="cuda")[None, :] < lengths[:, None]
    return q, k, v, mask, torch.randn(B, H, L, D, device="cuda", dtype=DTYPE, generator=g)


def _step_fn(fn, sets):
    state = {"i": 0}

    def step():
        q, k, v, mask, grad_out = sets[state["i"] % len(sets)]
        state["i"] += 1
        torch.autograd.grad(fn(q, k, v, mask), (q, k, v), grad_out)
    return step


def _errors(fn, q, k, v, mask, grad_out):
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    s = leaves[0] @ leaves[1].transpose(-1, -2) / D ** 0.5
    if mask is not None:
        s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
    ref = torch.softmax(s, -1) @ leaves[2]
    want = (ref, *torch.autograd.grad(ref, leaves, grad_out.double()))
    out = fn(q, k, v, mask)
    got = (out, *torch.autograd.grad(out, (q, k, v), grad_out))
    names = ("out", "dq", "dk", "dv")
    return {name: ((a.double() - b).norm() / b.norm()).item() for name, a, b in zip(names, got, want)}


def _environment():
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30,
                                  cwd=Path(__file__).resolve().parents[1]).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "unknown"
    return {"gpu": torch.cuda.get_device_name(), "driver": run(["nvidia-smi", "--query-gpu=driver_version",
                                                               "--format=csv,noheader"]),
            "cuda": torch.version.cuda, "torch": torch.__version__, "triton": triton.__version__,
            "commit": run(["git", "rev-parse", "HEAD"]), "shape": [B, H, L, D], "dtype": str(DTYPE)}


@pytest.fixture(scope="module", params=[False, True], ids=["nomask", "mask"])
def measured(request):
    """Every implementation timed in one place: CUDA-event medians (ms per fwd+bwd step) and errors."""
    sets = [_inputs(request.param, seed) for seed in range(INPUT_SETS)]
    results = {}
    for name, fn in IMPLS.items():
        try:
            errors = _errors(fn, *sets[0])
            ms = triton.testing.do_bench(_step_fn(fn, sets), warmup=100, rep=500, return_mode="median")
        except RuntimeError as exc:  # a forced SDPA backend that cannot take these inputs
            results[name] = {"unsupported": str(exc).splitlines()[0]}
            continue
        results[name] = {"median_ms": ms, "errors": errors}
    sdpa = {n: r["median_ms"] for n, r in results.items() if n.startswith("sdpa_") and "median_ms" in r}
    best = min(sdpa, key=sdpa.get)
    for r in results.values():
        if "median_ms" in r:
            r.update(best_sdpa=best, best_sdpa_ms=sdpa[best], speedup_vs_best_sdpa=sdpa[best] / r["median_ms"])
    return {"sets": sets, "results": results, "masked": request.param}


@pytest.mark.parametrize("impl", list(IMPLS))
def test_attention_fwd_bwd(benchmark, measured, impl):
    result = measured["results"][impl]
    if "unsupported" in result:
        pytest.skip(f"{impl}: {result['unsupported']}")
    step = _step_fn(IMPLS[impl], measured["sets"])

    def rounds():
        for _ in range(STEPS):
            step()
        torch.cuda.synchronize()

    benchmark.extra_info.update(_environment(), masked=measured["masked"], steps_per_round=STEPS, **result)
    benchmark.pedantic(rounds, rounds=20, iterations=1, warmup_rounds=3)
