"""A recorder of host reads of tensors (what is a device-to-host sync on a GPU), usable on a CPU.

On a CPU nothing tells a device tensor from a host one, so every read in the recording thread counts: run the
code under test with its host-side data work elsewhere (DataLoader workers, other threads; modes are
per-thread)."""

from __future__ import annotations

import traceback

import torch
from torch.overrides import TorchFunctionMode

T = torch.Tensor
# Each copies a value to the host and waits for the device: a sync on CUDA.
READS = {
    T.item,
    T.tolist,
    T.numpy,
    T.cpu,
    T.__bool__,
    T.__float__,
    T.__int__,
    T.__index__,
    T.__array__,
    T.__repr__,
    T.__format__,
    T.nonzero,
    torch.nonzero,
    T.unique,
    torch.unique,
    torch.masked_select,
    T.masked_select,
}


class HostReads(TorchFunctionMode):
    """Records (label, where) for each host read of a tensor while active; `label()` says when it happened.
    `.to("cpu")` counts; `.to(device)` with a device object does not (on a CPU it is the device)."""

    def __init__(self, label=lambda: None):
        super().__init__()
        self.label, self.reads = label, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        to_cpu = func is T.to and any(
            isinstance(a, str) and a.startswith("cpu") for a in (*args[1:], kwargs.get("device"))
        )
        if func in READS or to_cpu:
            where = traceback.extract_stack(limit=2)[0]  # the caller
            self.reads.append((self.label(), f"{func.__name__} at {where.filename}:{where.lineno}"))
        return func(*args, **kwargs)
