"""`attention(q, k, v, key_padding_mask=None)`: the one attention entry point the model calls.

Backends: torch SDPA, and the fused Triton kernel (attention_triton, Lq, Lk <= 128, CUDA). The backend is a
fixed rule of the inputs' device, dtype and shape, never a timing: the same shapes get the same kernel in
every run and on every rank, and choosing draws nothing from any random generator.

The rule (CROSSJEPA_ATTENTION=auto, the default): Triton only where TRITON_WINS, a table of benchmark
results committed with the code, lists the inputs (the GPU's compute capability, dtype, head dim, masked or
not, Lq and Lk up to a bound) and not under torch.compile (which traces SDPA natively); SDPA everywhere else.
The table is empty: the one GPU measurement so far (H200, 2026-12-04) had an earlier Triton kernel at 0.28x
of SDPA's speed, so SDPA is the default on every device until `crossjepa bench --suite attention` on a GPU
shows the kernel faster and its result is entered here.

CROSSJEPA_ATTENTION=sdpa always uses SDPA; CROSSJEPA_ATTENTION=triton uses the Triton kernel wherever it
supports the inputs, SDPA elsewhere. CPU tensors always use SDPA, unless TRITON_INTERPRET=1 and
CROSSJEPA_ATTENTION=triton (tests). Both variables are read once, at the first call (`reset_environment` makes
the next call read them again). `dispatch_record()` gives the mode, the rule and the backend of every input
kind seen by this process; pretraining writes it to the run's runtime.json.

Mask semantics (both backends): (B, Lk) bool, True = keep; masked keys get zero weight; a row whose keys are
all masked outputs zeros (SDPA alone would give NaN) and passes no gradient.

This module never imports triton unless the Triton kernel may run, so CPU-only use stays light.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..ops.argument_checks import check_attention_args
from ..validate import check_choice
from .triton_limits import HEAD_DIMS, interpreting, triton_supports

_MODES = ("auto", "triton", "sdpa")


@dataclass(frozen=True)
class TritonWin:
    """Inputs on which `crossjepa bench --suite attention` measured the Triton kernel faster than SDPA."""

    capability: tuple[int, int]  # the CUDA compute capability of the GPU measured
    dtype: torch.dtype
    head_dim: int
    masked: bool
    max_lq: int
    max_lk: int
    evidence: str  # the results file and its ratio, e.g. "benchmarks/results/bench_cuda_attention.json: 1.4x"

    def covers(self, capability, dtype, lq, lk, head_dim, masked) -> bool:
        return (
            capability == self.capability
            and dtype == self.dtype
            and head_dim == self.head_dim
            and masked == self.masked
            and lq <= self.max_lq
            and lk <= self.max_lk
        )


TRITON_WINS: tuple[TritonWin, ...] = ()  # nothing measured faster yet: SDPA everywhere


@dataclass(frozen=True)
class _Environment:
    mode: str  # CROSSJEPA_ATTENTION
    interpreted: bool  # TRITON_INTERPRET


_env: _Environment | None = None
_chosen: dict = {}  # (mode, device, dtype, Lq, Lk, d, masked) -> backend: the decisions, and the record


def reset_environment() -> None:
    """Forget the environment read and the choices made: the next call reads CROSSJEPA_ATTENTION and
    TRITON_INTERPRET again (for tests that change them)."""
    global _env
    _env = None
    _chosen.clear()


def _environment() -> _Environment:
    global _env
    if _env is None:
        mode = os.environ.get("CROSSJEPA_ATTENTION", "auto").strip().lower() or "auto"
        check_choice("CROSSJEPA_ATTENTION", mode, _MODES)
        _env = _Environment(mode, interpreting())
    return _env


def sdpa_attention(q, k, v, key_padding_mask=None):
    """torch SDPA with the same mask semantics as the Triton kernel (fully masked rows -> zeros)."""
    if key_padding_mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    any_keep = key_padding_mask.any(dim=-1)
    # A row with no key kept would be NaN in SDPA: let it attend everywhere, then zero it (gradient zero too).
    attn_mask = (key_padding_mask | ~any_keep[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return out.masked_fill(~any_keep[:, None, None, None], 0.0)


@functools.cache
def _triton_fn():
    """The Triton autograd apply (inputs already validated), or None where triton cannot be imported."""
    try:
        from .attention_triton import FusedAttention
    except ImportError:
        return None
    return FusedAttention.apply


def rule(capability: tuple[int, int] | None, dtype: torch.dtype, lq: int, lk: int, head_dim: int, masked: bool) -> str:
    """The auto choice outside torch.compile: "triton" where TRITON_WINS covers the inputs, else "sdpa".
    capability: the CUDA device's compute capability, None off CUDA."""
    wins = capability is not None and any(w.covers(capability, dtype, lq, lk, head_dim, masked) for w in TRITON_WINS)
    return "triton" if wins else "sdpa"


def rule_text() -> str:
    """The rule as runtime.json records it, with the table it reads."""
    wins = "; ".join(
        f"sm_{w.capability[0]}{w.capability[1]} {str(w.dtype).removeprefix('torch.')} d={w.head_dim}"
        f" {'masked' if w.masked else 'unmasked'} Lq <= {w.max_lq} Lk <= {w.max_lk}"
        for w in TRITON_WINS
    )
    return (
        f"triton where a measured win lists the inputs (GPU capability, dtype, head dim in {HEAD_DIMS}, "
        f"masked, Lq <= max, Lk <= max) and not compiling; else sdpa. Measured wins: {wins or 'none'}"
    )


def _choose(env: _Environment, q, k, key_padding_mask) -> str:
    if env.mode == "sdpa" or not triton_supports(q, k, env.interpreted, allow_fp32=not q.is_cuda):
        return "sdpa"
    if env.mode == "auto":
        capability = torch.cuda.get_device_capability(q.device) if q.is_cuda else None
        if rule(capability, q.dtype, q.shape[2], k.shape[2], q.shape[3], key_padding_mask is not None) == "sdpa":
            return "sdpa"
    return "triton" if _triton_fn() is not None else "sdpa"


def selected_backend(q, k, v, key_padding_mask=None) -> str:
    """ "triton" or "sdpa": what `attention` runs for these inputs (a pure function of mode, device, dtype and
    shape; never measures, never draws random numbers)."""
    check_attention_args(q, k, v, key_padding_mask)
    env = _environment()
    if torch.compiler.is_compiling():  # torch.compile traces SDPA natively; nothing is recorded while tracing
        return _choose(env, q, k, key_padding_mask) if env.mode == "triton" else "sdpa"
    key = (env.mode, q.device, q.dtype, q.shape[2], k.shape[2], q.shape[3], key_padding_mask is not None)
    backend = _chosen.get(key)
    if backend is None:
        backend = _chosen[key] = _choose(env, q, k, key_padding_mask)
    return backend


def dispatch_record() -> dict:
    """{"mode", "rule", "choices": [{mode, device, dtype, lq, lk, head_dim, masked, backend}, ...]}: what this
    process chose so far (for a run's record)."""
    choices = [
        {
            "mode": mode,
            "device": str(device),
            "dtype": str(dtype).removeprefix("torch."),
            "lq": lq,
            "lk": lk,
            "head_dim": d,
            "masked": masked,
            "backend": backend,
        }
        for (mode, device, dtype, lq, lk, d, masked), backend in sorted(_chosen.items(), key=str)
    ]
    return {"mode": _environment().mode, "rule": rule_text(), "choices": choices}


def attention(q, k, v, key_padding_mask=None):
    """softmax(q k^T / sqrt(d)) v with an optional key-padding mask; q (B,H,Lq,d), k/v (B,H,Lk,d).

    key_padding_mask: (B, Lk) bool, True = keep. Rows with every key masked give zeros. Differentiable.
    """
    if selected_backend(q, k, v, key_padding_mask) == "triton":
        return _triton_fn()(q, k, v, key_padding_mask)
    return sdpa_attention(q, k, v, key_padding_mask)
