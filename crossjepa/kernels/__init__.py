"""Attention kernels: `attention` picks the Triton fused kernel or torch SDPA per shape (see dispatch)."""

from .dispatch import attention, sdpa_attention, selected_backend

__all__ = ["attention", "sdpa_attention", "selected_backend"]
