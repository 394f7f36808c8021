"""`attention(q, k, v, key_padding_mask=None)`: the one attention entry point the model calls.

Backends: torch SDPA, and the Triton fused kernel (attention_triton) for short sequences on CUDA. The backend
is a fixed rule of the inputs' device, dtype and shape, never a timing: the same shapes get the same kernel in
every run and on every rank, and choosing draws nothing from any random generator.

The rule (CROSSJEPA_ATTENTION=auto, the default): Triton when q is on CUDA, fp16 or bf16, the head dim is in
HEAD_DIMS, Lq <= MAX_LEN and Lk <= RULE_MAX_KEYS, and not under torch.compile (which traces SDPA natively);
SDPA otherwise. RULE_MAX_KEYS = 128 is where the kernel holds a head's keys and values in one resident tile,
the case it is built for (a plain softmax, a backward without atomics; the encoder has 65 tokens). It is the
kernel's design point, not a measurement: no GPU timings of the two backends exist yet. Re-measure it on a GPU
with the benchmark suite (`crossjepa bench --suite attention`, shapes around the threshold) and move
RULE_MAX_KEYS to the measured crossover.

CROSSJEPA_ATTENTION=sdpa always uses SDPA; CROSSJEPA_ATTENTION=triton uses the Triton kernel wherever it
supports the inputs (Lq, Lk <= MAX_LEN), SDPA elsewhere. CPU tensors always use SDPA, unless TRITON_INTERPRET=1
and CROSSJEPA_ATTENTION=triton (tests). `dispatch_record()` gives the mode, the rule and the backend of every
input kind seen by this process; pretraining writes it to the run's runtime.json.

Mask semantics (both backends): (B, Lk) bool, True = keep; masked keys get zero weight; a row whose keys are
all masked outputs zeros (SDPA alone would give NaN) and passes no gradient.

This module never imports triton unless the Triton kernel may run, so CPU-only use stays light.
"""

import os

import torch
import torch.nn.functional as F

from .support import HEAD_DIMS, MAX_LEN, check_attention_args, triton_supports

RULE_MAX_KEYS = 128
_MODES = ("auto", "triton", "sdpa")
RULE = (f"triton if CUDA, fp16/bf16, head dim in {HEAD_DIMS}, Lq <= {MAX_LEN}, Lk <= {RULE_MAX_KEYS} and not "
        f"compiling; else sdpa")
_chosen: dict = {}  # (mode, device type, dtype, Lq, Lk, d, masked) -> backend, for dispatch_record


def sdpa_attention(q, k, v, key_padding_mask=None):
    """torch SDPA with the same mask semantics as the Triton kernel (fully masked rows -> zeros)."""
    if key_padding_mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    any_keep = key_padding_mask.any(dim=-1)
    # A row with no key kept would be NaN in SDPA: let it attend everywhere, then zero it (gradient zero too).
    attn_mask = (key_padding_mask | ~any_keep[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return out.masked_fill(~any_keep[:, None, None, None], 0.0)


def _mode() -> str:
    mode = os.environ.get("CROSSJEPA_ATTENTION", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise ValueError(f"CROSSJEPA_ATTENTION: expected one of {', '.join(_MODES)}, got {mode!r}")
    return mode


def _triton_fn():
    """The Triton autograd apply (inputs already validated), or None where triton cannot be imported."""
    try:
        from .attention_triton import FusedAttention
    except ImportError:
        return None
    return FusedAttention.apply


def rule(device_type: str, dtype: torch.dtype, lq: int, lk: int, head_dim: int) -> str:
    """The auto choice for these inputs, outside torch.compile: see the module docstring."""
    fits = dtype in (torch.float16, torch.bfloat16) and head_dim in HEAD_DIMS
    return "triton" if device_type == "cuda" and fits and 1 <= lq <= MAX_LEN and 1 <= lk <= RULE_MAX_KEYS else "sdpa"


def _choose(mode, q, k, key_padding_mask) -> str:
    if mode == "sdpa" or not triton_supports(q, k, key_padding_mask, allow_fp32=not q.is_cuda):
        return "sdpa"
    if mode == "auto" and (torch.compiler.is_compiling()  # torch.compile traces SDPA natively
                           or rule(q.device.type, q.dtype, q.shape[2], k.shape[2], q.shape[3]) == "sdpa"):
        return "sdpa"
    return "triton" if _triton_fn() is not None else "sdpa"


def selected_backend(q, k, v, key_padding_mask=None) -> str:
    """"triton" or "sdpa": what `attention` runs for these inputs (a pure function of mode, device, dtype and
    shape; never measures, never draws random numbers)."""
    check_attention_args(q, k, v, key_padding_mask)
    mode = _mode()
    backend = _choose(mode, q, k, key_padding_mask)
    if not torch.compiler.is_compiling():
        key = (mode, q.device.type, str(q.dtype).removeprefix("torch."), q.shape[2], k.shape[2], q.shape[3],
               key_padding_mask is not None)
        _chosen[key] = backend
    return backend


def dispatch_record() -> dict:
    """{"mode", "rule", "choices": [{device, dtype, lq, lk, head_dim, masked, backend}, ...]}: what this
    process chose so far (for a run's record)."""
    fields = ("mode", "device", "dtype", "lq", "lk", "head_dim", "masked")
    choices = [{**dict(zip(fields, key)), "backend": backend} for key, backend in sorted(_chosen.items(), key=str)]
    return {"mode": _mode(), "rule": RULE, "choices": choices}


def attention(q, k, v, key_padding_mask=None):
    """softmax(q k^T / sqrt(d)) v with an optional key-padding mask; q (B,H,Lq,d), k/v (B,H,Lk,d).

    key_padding_mask: (B, Lk) bool, True = keep. Rows with every key masked give zeros. Differentiable.
    """
    if selected_backend(q, k, v, key_padding_mask) == "triton":
        return _triton_fn()(q, k, v, key_padding_mask)
    return sdpa_attention(q, k, v, key_padding_mask)
