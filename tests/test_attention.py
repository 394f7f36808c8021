"""Fused attention and its dispatcher against a float64 reference.

The Triton kernels are checked in the interpreter on CPU: triton fixes interpreter mode when a kernel is
decorated, so those checks run in a subprocess (this file run as a script with TRITON_INTERPRET=1) and work
whether or not something in this pytest process already imported triton. GPU tests skip without CUDA.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crossjepa.kernels import attention, dispatch, sdpa_attention, selected_backend

REPO = Path(__file__).resolve().parents[1]


def reference(q, k, v, key_padding_mask=None):
    """float64 softmax(q k^T / sqrt(d)) v; masked keys weigh zero, rows with no key kept are zero."""
    q, k, v = (t.double() for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if key_padding_mask is None:
        return torch.softmax(s, -1) @ v
    any_keep = key_padding_mask.any(-1)
    keep = (key_padding_mask | ~any_keep[:, None])[:, None, None, :]
    out = torch.softmax(s.masked_fill(~keep, float("-inf")), -1) @ v
    return out * any_keep[:, None, None, None]


def random_mask(batch, length, generator):
    """Row 0 partly kept, row 1 fully masked, the rest partly kept (at least one key each)."""
    mask = torch.rand(batch, length, generator=generator) > 0.35
    mask[:, 0] |= torch.rand(batch, generator=generator) > 0.5
    mask[torch.arange(batch), torch.randint(length, (batch,), generator=generator)] = True
    if batch > 1:
        mask[1] = False
    return mask


def rel_err(got, want, floor=0.1):
    """max |got - want| over max(max |want|, floor): the floor keeps exact-zero references meaningful."""
    got, want = got.double(), want.double()
    return ((got - want).abs().max() / want.abs().max().clamp_min(floor)).item()


def errors_vs_reference(fn, q, k, v, mask, generator):
    """Relative errors of fn's output and (dq, dk, dv) against the float64 reference."""
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    out = fn(*leaves, mask)
    grad_out = torch.randn(out.shape, generator=generator).to(out)
    grads = torch.autograd.grad(out, leaves, grad_out)
    ref_leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref = reference(*ref_leaves, mask)
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad_out.double())
    errs = {"out": rel_err(out, ref)}
    errs.update({name: rel_err(g, r) for name, g, r in zip(("dq", "dk", "dv"), grads, ref_grads)})
    errs["finite"] = bool(torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads))
    if mask is not None and mask.shape[0] > 1:
        errs["masked_row_zero"] = bool((out[1] == 0).all() and (grads[0][1] == 0).all())
    return errs


# name -> (B, H, Lq, Lk, d, dtype, masked, packed): the interpreter dot supports fp16 and fp32, not bf16.
INTERP_CASES = {
    f"L{length}-d{d}-{'mask' if masked else 'nomask'}": (3, 2, length, length, d, "float16", masked, False)
    for length in (1, 17, 65) for d in (32, 64) for masked in (False, True)
}
INTERP_CASES.update({
    "L17-d32-mask-fp32": (3, 2, 17, 17, 32, "float32", True, False),
    "L65-d64-mask-packed-qkv": (2, 2, 65, 65, 64, "float16", True, True),
    "Lq5-Lk65-d32-cross": (2, 3, 5, 65, 32, "float16", True, False),
    "L130-d32-mask-streamed-fp32": (2, 1, 130, 130, 32, "float32", True, False),
})
INTERP_TOL = {"float16": 4e-3, "float32": 1e-5}


def make_inputs(b, h, lq, lk, d, dtype, masked, packed, generator):
    if packed:  # views into one (B, L, 3, H, d) projection, as a model's qkv linear gives them
        qkv = torch.randn(b, lq, 3, h, d, generator=generator).to(dtype)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    else:
        q = torch.randn(b, h, lq, d, generator=generator).to(dtype)
        k, v = (torch.randn(b, h, lk, d, generator=generator).to(dtype) for _ in range(2))
    return q, k, v, (random_mask(b, lk, generator) if masked else None)


def _interpreter_worker():
    """Runs every INTERP_CASES case through `attention` (CROSSJEPA_ATTENTION=triton) and prints JSON."""
    from crossjepa.kernels import attention_triton

    generator = torch.Generator().manual_seed(0)
    results = {"configs": [len(attention_triton._fwd.configs), len(attention_triton._bwd.configs)]}
    for name, (b, h, lq, lk, d, dtype, masked, packed) in INTERP_CASES.items():
        q, k, v, mask = make_inputs(b, h, lq, lk, d, getattr(torch, dtype), masked, packed, generator)
        errs = errors_vs_reference(attention, q, k, v, mask, generator)
        errs["backend"] = selected_backend(q, k, v, mask)
        errs["out_layout_blhd"] = attention(q, k, v, mask).transpose(1, 2).is_contiguous()
        results[name] = errs
    print(json.dumps(results))


@pytest.fixture(scope="module")
def interp_results():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "CROSSJEPA_ATTENTION": "triton",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_interpreter_uses_exactly_one_config(interp_results):
    assert interp_results["configs"] == [1, 1]


@pytest.mark.parametrize("case", list(INTERP_CASES))
def test_triton_interpreter_matches_float64(interp_results, case):
    errs = interp_results[case]
    tol = INTERP_TOL[INTERP_CASES[case][5]]
    assert errs["backend"] == "triton"
    assert errs["finite"]
    assert errs["out_layout_blhd"]
    for name in ("out", "dq", "dk", "dv"):
        assert errs[name] < tol, (name, errs[name])
    if "masked_row_zero" in errs:
        assert errs["masked_row_zero"]


def test_gpu_autotune_configs_fit_the_sequence():
    triton = pytest.importorskip("triton")
    from crossjepa.kernels import attention_triton

    configs = [triton.Config({"BLOCK_M": m}, num_warps=4, num_stages=s) for m in (16, 32, 64, 128) for s in (1, 2)]

    def picked(cs):
        return {(c.kwargs["BLOCK_M"], c.num_stages) for c in cs}

    assert picked(attention_triton._prune_fwd(configs, {"Lq": 17}, SINGLE_KV=True)) == {(16, 1), (32, 1)}
    assert picked(attention_triton._prune_fwd(configs, {"Lq": 200}, SINGLE_KV=False)) == picked(configs)
    assert picked(attention_triton._prune_bwd(configs, {"Lq": 1}, SINGLE_KV=True)) == {(16, 1), (16, 2)}


# ----------------------------------------------------------------------------------------------- CPU (SDPA)

@pytest.mark.parametrize("masked", [False, True])
def test_cpu_uses_sdpa_and_matches_float64(monkeypatch, masked):
    monkeypatch.delenv("CROSSJEPA_ATTENTION", raising=False)
    generator = torch.Generator().manual_seed(1)
    q, k, v, mask = make_inputs(3, 2, 17, 17, 32, torch.float32, masked, False, generator)
    assert selected_backend(q, k, v, mask) == "sdpa"
    errs = errors_vs_reference(attention, q, k, v, mask, generator)
    assert errs["finite"]
    assert max(errs[n] for n in ("out", "dq", "dk", "dv")) < 1e-5
    if masked:
        assert errs["masked_row_zero"]


def test_sdpa_fully_masked_batch_gives_zeros_not_nan():
    q, k, v = (torch.randn(2, 3, 9, 32) for _ in range(3))
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, :4] = True
    out = sdpa_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and (out[1] == 0).all()
    torch.testing.assert_close(out[0:1], reference(q[0:1], k[0:1], v[0:1], mask[0:1]).float(), rtol=1e-5, atol=1e-5)


def test_forced_triton_without_support_falls_back_to_sdpa(monkeypatch):
    monkeypatch.setenv("CROSSJEPA_ATTENTION", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    q, k, v = (torch.randn(2, 2, 17, 32) for _ in range(3))
    assert selected_backend(q, k, v) == "sdpa"  # CPU without the interpreter
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    q48 = torch.randn(2, 2, 17, 48)
    assert selected_backend(q48, q48, q48) == "sdpa"  # unsupported head dim
    assert selected_backend(*(torch.randn(1, 1, 300, 32) for _ in range(3))) == "sdpa"  # too long


# (Lq, Lk, head dim, dtype, device) -> the auto rule's choice
RULE_CASES = [((65, 65, 64, torch.bfloat16, "cuda"), "triton"), ((1, 1, 64, torch.bfloat16, "cuda"), "triton"),
              ((17, 128, 32, torch.float16, "cuda"), "triton"), ((65, 129, 64, torch.bfloat16, "cuda"), "sdpa"),
              ((256, 256, 128, torch.bfloat16, "cuda"), "sdpa"), ((65, 65, 64, torch.float32, "cuda"), "sdpa"),
              ((65, 65, 48, torch.bfloat16, "cuda"), "sdpa"), ((300, 65, 64, torch.bfloat16, "cuda"), "sdpa"),
              ((65, 65, 64, torch.bfloat16, "cpu"), "sdpa")]


def _rule_table() -> list:
    return [dispatch.rule(dev, dt, lq, lk, d) for (lq, lk, d, dt, dev), _ in RULE_CASES]


def test_auto_rule_depends_only_on_shape_dtype_and_device():
    assert _rule_table() == [want for _, want in RULE_CASES]
    code = ("import json, torch; from tests.test_attention import _rule_table; "
            "print(json.dumps(_rule_table()))")
    other = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                           capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(other.stdout) == _rule_table()  # another process decides the same


def test_dispatch_draws_no_random_numbers_and_is_recorded(monkeypatch):
    monkeypatch.delenv("CROSSJEPA_ATTENTION", raising=False)
    q, k, v = (torch.randn(2, 3, 9, 32) for _ in range(3))
    mask = torch.ones(2, 9, dtype=torch.bool)
    state = torch.get_rng_state()
    choices = {selected_backend(q, k, v, mask) for _ in range(3)}
    attention(q, k, v)
    assert choices == {"sdpa"} and torch.equal(torch.get_rng_state(), state)
    record = dispatch.dispatch_record()
    assert record["mode"] == "auto" and record["rule"] == dispatch.RULE
    assert {"mode": "auto", "device": "cpu", "dtype": "float32", "lq": 9, "lk": 9, "head_dim": 32, "masked": True,
            "backend": "sdpa"} in record["choices"]
    assert json.loads(json.dumps(record)) == record


def test_env_var_is_validated(monkeypatch):
    monkeypatch.setenv("CROSSJEPA_ATTENTION", "fastest")
    q = torch.randn(1, 1, 4, 32)
    with pytest.raises(ValueError, match="CROSSJEPA_ATTENTION"):
        attention(q, q, q)
    monkeypatch.setenv("CROSSJEPA_ATTENTION", "SDPA")
    assert selected_backend(q, q, q) == "sdpa"


@pytest.mark.parametrize("args, exc, needle", [
    ((torch.randn(2, 4, 32),) * 3 + (None,), ValueError, "q: expected shape"),
    ((torch.randn(1, 2, 4, 32), torch.randn(1, 2, 4, 32).half(), torch.randn(1, 2, 4, 32), None), TypeError, "k:"),
    ((torch.randn(1, 2, 4, 32), torch.randn(1, 3, 4, 32), torch.randn(1, 3, 4, 32), None), ValueError, "k:"),
    ((torch.randn(1, 2, 4, 32), torch.randn(1, 2, 6, 32), torch.randn(1, 2, 5, 32), None), ValueError, "v:"),
    ((torch.randn(1, 2, 4, 32),) * 3 + (torch.ones(1, 4),), TypeError, "key_padding_mask"),
    ((torch.randn(1, 2, 4, 32),) * 3 + (torch.ones(1, 5, dtype=torch.bool),), ValueError, "key_padding_mask"),
    (([[1.0]], torch.randn(1, 2, 4, 32), torch.randn(1, 2, 4, 32), None), TypeError, "q:"),
])
def test_bad_input_raises_one_line_error(args, exc, needle):
    with pytest.raises(exc, match=needle) as info:
        attention(*args)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------------- GPU

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _rel_norm(got, want):
    return ((got.double() - want).norm() / want.norm().clamp_min(1e-12)).item()


# (B, H, Lq, Lk, d), dtype, masked: the encoder's shape in both dtypes, then one tile sizes / streamed keys /
# cross lengths each (every distinct case autotunes and compiles its own kernels, so the list stays short).
GPU_CASES = [((512, 6, 65, 65, 64), dt, masked) for dt in (torch.bfloat16, torch.float16) for masked in (False, True)]
GPU_CASES += [((8, 3, 130, 130, 128), torch.bfloat16, True), ((4, 2, 256, 256, 32), torch.bfloat16, False),
              ((16, 6, 1, 1, 64), torch.bfloat16, True), ((32, 6, 17, 65, 128), torch.float16, True),
              ((64, 6, 128, 128, 128), torch.bfloat16, False)]


@requires_cuda
@pytest.mark.parametrize("shape, dtype, masked", GPU_CASES)
def test_gpu_triton_matches_float64(shape, dtype, masked):
    pytest.importorskip("triton")
    from crossjepa.kernels.attention_triton import fused_attention

    b, h, lq, lk, d = shape
    generator = torch.Generator().manual_seed(2)
    q, k, v, mask = (t if t is None else t.cuda() for t in make_inputs(b, h, lq, lk, d, dtype, masked, False,
                                                                       generator))
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    out = fused_attention(*leaves, mask)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, grad_out)
    ref_leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref = reference(*ref_leaves, mask)
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad_out.double())
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    for name, got, want in zip(("out", "dq", "dk", "dv"), (out, *grads), (ref, *ref_grads)):
        if name == "dq" and lk == 1:
            assert got.abs().max() == 0  # softmax over one key is constant
            continue
        assert _rel_norm(got, want) < 1e-2, name
    if masked and b > 1:
        assert (out[1] == 0).all() and (grads[0][1] == 0).all()


@requires_cuda
def test_gpu_dispatch_follows_the_rule_draws_nothing_and_matches(monkeypatch):
    monkeypatch.delenv("CROSSJEPA_ATTENTION", raising=False)
    generator = torch.Generator().manual_seed(3)
    q, k, v, mask = (t.cuda() for t in make_inputs(64, 6, 65, 65, 64, torch.bfloat16, True, False, generator))
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    rng = torch.cuda.get_rng_state()
    assert selected_backend(*leaves, mask) == selected_backend(*leaves, mask) == "triton"  # Lk 65 <= 128
    long = torch.randn(2, 6, 200, 64, device="cuda", dtype=torch.bfloat16)
    assert selected_backend(long, long, long) == "sdpa"  # past the rule's key length
    out = attention(*leaves, mask)
    assert torch.equal(torch.cuda.get_rng_state(), rng)
    assert _rel_norm(out, reference(q, k, v, mask)) < 1e-2
    assert (out[1] == 0).all()


if __name__ == "__main__":
    _interpreter_worker()
