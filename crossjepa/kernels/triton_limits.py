"""The inputs the Triton attention kernel handles, shared by dispatch.py and attention_triton.py (which
dispatch.py imports only when the kernel may run). Argument checks live in ops/argument_checks.py."""

import os

import torch

MAX_LEN = 128  # the Triton kernel holds a whole (batch, head) in one program
HEAD_DIMS = (32, 64, 128)


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
