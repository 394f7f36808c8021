"""`attention(q, k, v, key_padding_mask=None)`: the one attention entry point the model calls.

Backends: torch SDPA, and the Triton fused kernel (attention_triton) for short sequences on CUDA. With
CROSSJEPA_ATTENTION=auto (the default) the first call for a (device, shape, dtype, mask?, needs-grad) key times
both (forward, plus backward when a gradient is needed) with CUDA events and caches the faster one for the
process, so the choice is never slower than SDPA as measured. Under torch.compile, auto means SDPA; inside a
CUDA graph capture, auto uses a choice measured before the capture, else SDPA. CROSSJEPA_ATTENTION=sdpa always
uses SDPA; CROSSJEPA_ATTENTION=triton uses the Triton kernel wherever it supports the inputs, SDPA elsewhere.
CPU tensors always use SDPA, unless TRITON_INTERPRET=1 and CROSSJEPA_ATTENTION=triton (tests).

Mask semantics (both backends): (B, Lk) bool, True = keep; masked keys get zero weight; a row whose keys are
all masked outputs zeros (SDPA alone would give NaN) and passes no gradient.

This module never imports triton unless the Triton kernel may run, so CPU-only use stays light.
"""

import os
import statistics

import torch
import torch.nn.functional as F

MAX_LEN = 256
HEAD_DIMS = (32, 64, 128)
_MODES = ("auto", "triton", "sdpa")
_choice: dict = {}  # key -> "triton" | "sdpa", filled by the first call per key


def check_attention_args(q, k, v, key_padding_mask=None):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name}: expected shape (B, H, L, d), got {tuple(t.shape)}")
        if not t.is_floating_point() or t.dtype != q.dtype:
            raise TypeError(f"{name}: expected a floating tensor of q's dtype {q.dtype}, got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name}: expected a tensor on q's device {q.device}, got {t.device}")
    if v.shape != k.shape:
        raise ValueError(f"v: expected k's shape {tuple(k.shape)}, got {tuple(v.shape)}")
    if k.shape[:2] != q.shape[:2] or k.shape[3] != q.shape[3]:
        raise ValueError(f"k: expected shape ({q.shape[0]}, {q.shape[1]}, Lk, {q.shape[3]}), got {tuple(k.shape)}")
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            got = getattr(key_padding_mask, "dtype", type(key_padding_mask).__name__)
            raise TypeError(f"key_padding_mask: expected a bool tensor, got {got}")
        if key_padding_mask.shape != (k.shape[0], k.shape[2]) or key_padding_mask.device != q.device:
            raise ValueError(f"key_padding_mask: expected shape ({k.shape[0]}, {k.shape[2]}) on {q.device}, "
                             f"got {tuple(key_padding_mask.shape)} on {key_padding_mask.device}")


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def triton_supports(q, k, key_padding_mask=None, allow_fp32=False) -> bool:
    """Whether the Triton kernel handles these inputs (shapes, dtypes, device); fp32 only where asked."""
    dtypes = (torch.float16, torch.bfloat16, torch.float32) if allow_fp32 else (torch.float16, torch.bfloat16)
    b, h, lq, d = q.shape
    lk = k.shape[2]
    on_device = q.is_cuda or (q.device.type == "cpu" and _interpreting())
    return (on_device and q.dtype in dtypes and d in HEAD_DIMS and 1 <= lq <= MAX_LEN and 1 <= lk <= MAX_LEN
            and b * h >= 1)


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


def _time_ms(fn, q, k, v, key_padding_mask, needs_grad, rounds=5, iters=5):
    """Median milliseconds of `iters` calls (forward, + backward when needs_grad), over `rounds` event pairs."""
    leaves = [t.detach().requires_grad_(t.requires_grad and needs_grad) for t in (q, k, v)]
    wrt = [t for t in leaves if t.requires_grad]
    grad_out = torch.randn_like(q) if needs_grad else None

    def step():
        with torch.set_grad_enabled(needs_grad):
            out = fn(*leaves, key_padding_mask)
            if needs_grad:
                torch.autograd.grad(out, wrt, grad_out)

    step()  # compile and autotune outside the timed region
    step()
    samples = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            step()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / iters)
    return statistics.median(samples)


def _measure(fused, q, k, v, key_padding_mask, needs_grad) -> str:
    from triton.compiler.errors import CompilationError
    from triton.runtime.errors import OutOfResources

    try:
        t_triton = _time_ms(fused, q, k, v, key_padding_mask, needs_grad)
    except (OutOfResources, CompilationError):
        return "sdpa"
    t_sdpa = _time_ms(sdpa_attention, q, k, v, key_padding_mask, needs_grad)
    return "triton" if t_triton < t_sdpa else "sdpa"


def selected_backend(q, k, v, key_padding_mask=None) -> str:
    """"triton" or "sdpa": what `attention` runs for these inputs (measuring on the first CUDA call in auto)."""
    check_attention_args(q, k, v, key_padding_mask)
    mode = _mode()
    if mode == "sdpa" or not triton_supports(q, k, key_padding_mask, allow_fp32=not q.is_cuda):
        return "sdpa"
    if mode == "triton":
        return "triton" if _triton_fn() is not None else "sdpa"
    if not q.is_cuda or torch.compiler.is_compiling():
        return "sdpa"  # the interpreter is for tests; torch.compile traces SDPA natively
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    key = (q.device, tuple(q.shape), k.shape[2], q.dtype, key_padding_mask is not None, needs_grad)
    if key in _choice:
        return _choice[key]
    fused = _triton_fn()
    if fused is None:
        return "sdpa"
    if torch.cuda.is_current_stream_capturing():
        return "sdpa"  # cannot time inside a CUDA graph capture; a key measured before capture keeps its choice
    _choice[key] = _measure(fused, q, k, v, key_padding_mask, needs_grad)
    return _choice[key]


def attention(q, k, v, key_padding_mask=None):
    """softmax(q k^T / sqrt(d)) v with an optional key-padding mask; q (B,H,Lq,d), k/v (B,H,Lk,d).

    key_padding_mask: (B, Lk) bool, True = keep. Rows with every key masked give zeros. Differentiable.
    """
    if selected_backend(q, k, v, key_padding_mask) == "triton":
        return _triton_fn()(q, k, v, key_padding_mask)
    return sdpa_attention(q, k, v, key_padding_mask)
