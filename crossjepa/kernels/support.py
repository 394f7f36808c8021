"""What the attention backends accept: argument checks and the Triton kernel's supported inputs, shared by
dispatch.py and attention_triton.py (which dispatch.py imports only when the kernel may run)."""

import os

import torch

MAX_LEN = 128  # the Triton kernel holds a whole (batch, head) in one program
HEAD_DIMS = (32, 64, 128)


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


def interpreting() -> bool:
    """Whether TRITON_INTERPRET asks triton to run kernels in its CPU interpreter (read when called)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def triton_supports(q, k, interpreted: bool, allow_fp32: bool = False) -> bool:
    """Whether the Triton kernel handles these inputs (shapes, dtypes, device): CUDA tensors, or CPU tensors
    when `interpreted`; fp32 only where asked."""
    dtypes = (torch.float16, torch.bfloat16, torch.float32) if allow_fp32 else (torch.float16, torch.bfloat16)
    lq, d = q.shape[2], q.shape[3]
    lk = k.shape[2]
    on_device = q.is_cuda or (q.device.type == "cpu" and interpreted)
    return on_device and q.dtype in dtypes and d in HEAD_DIMS and 1 <= lq <= MAX_LEN and 1 <= lk <= MAX_LEN
