"""Attention kernels: `attention` runs torch SDPA, or the fused Triton kernel where a committed benchmark
result shows it faster or CROSSJEPA_ATTENTION=triton asks for it (see dispatch)."""

from .dispatch import attention, dispatch_record, sdpa_attention, selected_backend

__all__ = ["attention", "dispatch_record", "sdpa_attention", "selected_backend"]
