"""Attention kernels: `attention` picks the Triton fused kernel or torch SDPA per shape by a fixed rule (see
dispatch)."""

from .dispatch import attention, dispatch_record, sdpa_attention, selected_backend

__all__ = ["attention", "dispatch_record", "sdpa_attention", "selected_backend"]
