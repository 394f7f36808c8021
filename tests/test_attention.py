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
    """(relative errors of fn's output and (dq, dk, dv) against the float64 reference, fn's output)."""
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
    errs["dq_abs_max"] = grads[0].abs().max().item()
    if mask is not None and mask.shape[0] > 1:
        errs["masked_row_zero"] = bool((out[1] == 0).all() and (grads[0][1] == 0).all())
    return errs, out


# name -> (B, H, Lq, Lk, d, dtype, masked, packed). Lengths cover one tile (1, 17, 128), a main block plus a
# tail (33, 65, 100 keys as one 128 tile), cross lengths and every head dim; the interpreter's tl.dot misreads
# bf16 (triton 3.6 and 3.9), so bf16 is checked on the GPU only. Small batches keep the subprocess to seconds.
INTERP_CASES = {
    "L1-d32-nomask": (2, 2, 1, 1, 32, "float16", False, False),
    "L1-d64-mask-fp32": (3, 1, 1, 1, 64, "float32", True, False),
    "L17-d32-mask": (3, 2, 17, 17, 32, "float16", True, False),
    "L33-d64-nomask": (2, 2, 33, 33, 64, "float16", False, False),
    "L65-d64-nomask": (2, 2, 65, 65, 64, "float16", False, False),
    "L65-d64-mask": (3, 2, 65, 65, 64, "float16", True, False),
    "L65-d64-mask-packed-qkv": (2, 2, 65, 65, 64, "float16", True, True),
    "L100-d32-mask-fp32": (2, 1, 100, 100, 32, "float32", True, False),
    "L128-d32-nomask": (2, 1, 128, 128, 32, "float16", False, False),
    "Lq5-Lk65-d32-cross-mask": (2, 3, 5, 65, 32, "float16", True, False),
    "Lq65-Lk17-d64-cross-fp32": (2, 1, 65, 17, 64, "float32", False, False),
    "L17-d128-mask": (2, 1, 17, 17, 128, "float16", True, False),
}
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
    generator = torch.Generator().manual_seed(0)
    results = {}
    for name, (b, h, lq, lk, d, dtype, masked, packed) in INTERP_CASES.items():
        q, k, v, mask = make_inputs(b, h, lq, lk, d, getattr(torch, dtype), masked, packed, generator)
        errs, out = errors_vs_reference(attention, q, k, v, mask, generator)
        errs["backend"] = selected_backend(q, k, v, mask)
        errs["out_layout_blhd"] = out.transpose(1, 2).is_contiguous()
        errs["dq_zero"] = bool(lk > 1 or (errs.pop("dq_abs_max") == 0))  # softmax over one key is constant
        results[name] = errs
    print(json.dumps(results))


@pytest.fixture(scope="module")
def interp_results():
    pytest.importorskip("triton")
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "CROSSJEPA_ATTENTION": "triton",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", list(INTERP_CASES))
def test_triton_interpreter_matches_float64(interp_results, case):
    errs = interp_results[case]
    tol = INTERP_TOL[INTERP_CASES[case][5]]
    assert errs["backend"] == "triton"
    assert errs["finite"]
    assert errs["out_layout_blhd"]
    assert errs["dq_zero"]
    for name in ("out", "dq", "dk", "dv"):
        assert errs[name] < tol, (name, errs[name])
    if "masked_row_zero" in errs:
        assert errs["masked_row_zero"]


def test_tiles_cover_every_length_with_least_padding():
    pytest.importorskip("triton")
    from crossjepa.kernels.attention_triton import MIN_BLOCK, num_warps, split

    def is_block(n):
        return n >= MIN_BLOCK and n & (n - 1) == 0

    for n in range(1, 129):
        main, tail = split(n)
        padded = max(MIN_BLOCK, 1 << (n - 1).bit_length())  # one power-of-two tile
        assert is_block(main) and (tail == 0 or is_block(tail)), n
        assert n <= main + tail <= padded, n  # covers n, never more than one tile would
        assert tail == 0 or main < n, n  # a tail only when the main block is full
        assert all(w in (4, 8) for w in num_warps(n, n, 64))
    assert split(65) == (64, 16)  # the encoder: 80 x 80 scores, not 128 x 128
    assert split(64) == (64, 0) and split(1) == (16, 0)


# ----------------------------------------------------------------------------------------------- CPU (SDPA)


@pytest.fixture
def attention_env(monkeypatch):
    """attention_env(NAME=value or None, ...): set (None: unset) environment variables and have the dispatcher
    read them again; both are undone after the test."""

    def set_env(**values):
        for name, value in values.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        dispatch.reset_environment()

    yield set_env
    monkeypatch.undo()
    dispatch.reset_environment()


@pytest.mark.parametrize("masked", [False, True])
def test_cpu_uses_sdpa_and_matches_float64(attention_env, masked):
    attention_env(CROSSJEPA_ATTENTION=None)
    generator = torch.Generator().manual_seed(1)
    q, k, v, mask = make_inputs(3, 2, 17, 17, 32, torch.float32, masked, False, generator)
    assert selected_backend(q, k, v, mask) == "sdpa"
    errs, _ = errors_vs_reference(attention, q, k, v, mask, generator)
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


def test_forced_triton_without_support_falls_back_to_sdpa(attention_env):
    attention_env(CROSSJEPA_ATTENTION="triton", TRITON_INTERPRET=None)
    q, k, v = (torch.randn(2, 2, 17, 32) for _ in range(3))
    assert selected_backend(q, k, v) == "sdpa"  # CPU without the interpreter
    attention_env(TRITON_INTERPRET="1")
    q48 = torch.randn(2, 2, 17, 48)
    assert selected_backend(q48, q48, q48) == "sdpa"  # unsupported head dim
    assert selected_backend(*(torch.randn(1, 1, 129, 32) for _ in range(3))) == "sdpa"  # past 128 tokens


def _win(**fields):
    base = {
        "capability": (9, 0),
        "dtype": torch.bfloat16,
        "head_dim": 64,
        "masked": False,
        "max_lq": 65,
        "max_lk": 65,
        "evidence": "test",
    }
    return dispatch.TritonWin(**{**base, **fields})


def test_auto_rule_picks_triton_only_where_a_measured_win_covers_the_inputs(monkeypatch):
    model = ((9, 0), torch.bfloat16, 65, 65, 64, False)  # capability, dtype, Lq, Lk, head dim, masked
    others = [
        ((8, 0), torch.bfloat16, 65, 65, 64, False),
        ((9, 0), torch.float16, 65, 65, 64, False),
        ((9, 0), torch.bfloat16, 65, 66, 64, False),
        ((9, 0), torch.bfloat16, 66, 65, 64, False),
        ((9, 0), torch.bfloat16, 65, 65, 32, False),
        ((9, 0), torch.bfloat16, 65, 65, 64, True),
        (None, torch.bfloat16, 65, 65, 64, False),
    ]
    monkeypatch.setattr(dispatch, "TRITON_WINS", ())
    assert {dispatch.rule(*inputs) for inputs in [model, *others]} == {"sdpa"}  # nothing measured: SDPA
    assert dispatch.rule_text().endswith("Measured wins: none")
    monkeypatch.setattr(dispatch, "TRITON_WINS", (_win(),))
    assert dispatch.rule(*model) == "triton"
    assert dispatch.rule((9, 0), torch.bfloat16, 1, 2, 64, False) == "triton"  # shorter is covered
    assert [dispatch.rule(*inputs) for inputs in others] == ["sdpa"] * len(others)
    assert "sm_90 bfloat16 d=64 unmasked Lq <= 65 Lk <= 65" in dispatch.rule_text()


def test_the_committed_table_lists_only_measured_wins():
    for win in dispatch.TRITON_WINS:  # each names the results file that shows it and the measured ratio
        path = REPO / win.evidence.split(":")[0]
        assert path.is_file() and path.suffix == ".json", win


def test_dispatch_runs_no_kernel_draws_no_random_numbers_and_is_recorded(attention_env):
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    attention_env(CROSSJEPA_ATTENTION=None)
    q, k, v = (torch.randn(2, 3, 9, 32) for _ in range(3))
    mask = torch.ones(2, 9, dtype=torch.bool)
    state = torch.get_rng_state()
    with CountOps() as counter:
        choices = {selected_backend(q, k, v, mask) for _ in range(3)}
    assert counter.ops == []  # no tensor operation, so nothing timed or synchronised
    attention(q, k, v)
    assert choices == {"sdpa"} and torch.equal(torch.get_rng_state(), state)
    record = dispatch.dispatch_record()
    assert record["mode"] == "auto" and record["rule"] == dispatch.rule_text()
    assert {
        "mode": "auto",
        "device": "cpu",
        "dtype": "float32",
        "lq": 9,
        "lk": 9,
        "head_dim": 32,
        "masked": True,
        "backend": "sdpa",
    } in record["choices"]
    assert json.loads(json.dumps(record)) == record


def test_environment_is_read_once_until_reset(attention_env, monkeypatch):
    attention_env(CROSSJEPA_ATTENTION="sdpa")
    q = torch.randn(1, 1, 4, 32)
    attention(q, q, q)
    monkeypatch.setenv("CROSSJEPA_ATTENTION", "triton")  # not read again by later calls
    attention(q, q, q)
    assert dispatch.dispatch_record()["mode"] == "sdpa"
    dispatch.reset_environment()
    assert dispatch.dispatch_record()["mode"] == "triton"


def test_env_var_is_validated(attention_env):
    attention_env(CROSSJEPA_ATTENTION="fastest")
    q = torch.randn(1, 1, 4, 32)
    with pytest.raises(ValueError, match="CROSSJEPA_ATTENTION"):
        attention(q, q, q)
    attention_env(CROSSJEPA_ATTENTION="SDPA")
    assert selected_backend(q, q, q) == "sdpa"


def test_fused_attention_rejects_what_it_cannot_run():
    pytest.importorskip("triton")
    from crossjepa.kernels.attention_triton import fused_attention

    long = torch.randn(1, 1, 129, 32)
    with pytest.raises(ValueError, match="Lq, Lk <= 128"):
        fused_attention(long, long, long)
    if torch.cuda.is_available():
        q = torch.randn(1, 1, 4, 32, device="cuda", dtype=torch.bfloat16)
        with pytest.raises(ValueError, match="warps"):
            fused_attention(q, q, q, warps=(3, 4))


@pytest.mark.parametrize(
    "args, exc, needle",
    [
        ((torch.randn(2, 4, 32),) * 3 + (None,), ValueError, "q: expected shape"),
        ((torch.randn(1, 2, 4, 32), torch.randn(1, 2, 4, 32).half(), torch.randn(1, 2, 4, 32), None), TypeError, "k:"),
        ((torch.randn(1, 2, 4, 32), torch.randn(1, 3, 4, 32), torch.randn(1, 3, 4, 32), None), ValueError, "k:"),
        ((torch.randn(1, 2, 4, 32), torch.randn(1, 2, 6, 32), torch.randn(1, 2, 5, 32), None), ValueError, "v:"),
        ((torch.randn(1, 2, 4, 32),) * 3 + (torch.ones(1, 4),), TypeError, "key_padding_mask"),
        ((torch.randn(1, 2, 4, 32),) * 3 + (torch.ones(1, 5, dtype=torch.bool),), ValueError, "key_padding_mask"),
        (([[1.0]], torch.randn(1, 2, 4, 32), torch.randn(1, 2, 4, 32), None), TypeError, "q:"),
    ],
)
def test_bad_input_raises_one_line_error(args, exc, needle):
    with pytest.raises(exc, match=needle) as info:
        attention(*args)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------------- GPU

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _rel_norm(got, want):
    return ((got.double() - want).norm() / want.norm().clamp_min(1e-12)).item()


# (B, H, Lq, Lk, d), dtype, masked, warps: the encoder's shape in both dtypes, then one of each tiling (one key,
# a short tail, cross lengths, one 128 tile, head dim 128) and each warp count forced (every distinct case
# compiles its own kernels, so the list stays short).
GPU_CASES = [
    ((512, 6, 65, 65, 64), dt, masked, None) for dt in (torch.bfloat16, torch.float16) for masked in (False, True)
]
GPU_CASES += [
    ((16, 6, 1, 1, 64), torch.bfloat16, True, None),
    ((32, 6, 17, 65, 128), torch.float16, True, None),
    ((8, 3, 100, 33, 32), torch.bfloat16, True, None),
    ((64, 6, 128, 128, 128), torch.bfloat16, False, None),
    ((64, 6, 65, 65, 64), torch.bfloat16, True, (8, 8)),
    ((64, 6, 65, 65, 64), torch.bfloat16, True, (4, 4)),
]


@requires_cuda
@pytest.mark.parametrize("shape, dtype, masked, warps", GPU_CASES)
def test_gpu_triton_matches_float64(shape, dtype, masked, warps):
    pytest.importorskip("triton")
    from crossjepa.kernels.attention_triton import fused_attention

    b, h, lq, lk, d = shape
    generator = torch.Generator().manual_seed(2)
    q, k, v, mask = (
        t if t is None else t.cuda() for t in make_inputs(b, h, lq, lk, d, dtype, masked, False, generator)
    )
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    out = fused_attention(*leaves, mask, warps=warps)
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
def test_gpu_dispatch_follows_the_table_draws_nothing_and_matches(attention_env, monkeypatch):
    attention_env(CROSSJEPA_ATTENTION=None)
    generator = torch.Generator().manual_seed(3)
    q, k, v, mask = (t.cuda() for t in make_inputs(64, 6, 65, 65, 64, torch.bfloat16, True, False, generator))
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    rng = torch.cuda.get_rng_state()
    monkeypatch.setattr(dispatch, "TRITON_WINS", ())
    assert selected_backend(*leaves, mask) == "sdpa"  # nothing measured: SDPA
    capability = torch.cuda.get_device_capability()
    monkeypatch.setattr(dispatch, "TRITON_WINS", (_win(capability=capability, masked=True),))
    dispatch.reset_environment()
    assert selected_backend(*leaves, mask) == selected_backend(*leaves, mask) == "triton"
    assert selected_backend(*leaves) == "sdpa"  # the win is for masked inputs only
    out = attention(*leaves, mask)
    assert torch.equal(torch.cuda.get_rng_state(), rng)
    assert _rel_norm(out, reference(q, k, v, mask)) < 1e-2
    assert (out[1] == 0).all()


if __name__ == "__main__":
    _interpreter_worker()
