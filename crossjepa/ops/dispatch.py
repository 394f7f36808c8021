"""Which implementation runs an op: the compiled extension (CPU / CUDA kernels) or the torch reference.

The extension is imported lazily, once. When it is missing, or has no kernel for the device, the op runs on
the torch reference and says so, never silently: one warning per reason (so one in all when the extension is
missing), naming it. A non-strict build that failed leaves its reason in BUILD_FAILURE_FILE (written by
setup.py), which the warning quotes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..validate import check_choice

OPS = ("farthest_point_sample", "knn", "group")


class ReferenceFallbackWarning(RuntimeWarning):
    """An op runs on the (slower) torch reference because no compiled kernel is available."""


# Beside crossjepa/__init__.py; the same name is written by setup.py.
BUILD_FAILURE_FILE = Path(__file__).resolve().parent.parent / "_build_failure.txt"

_extension_state: tuple | None = None  # (module or None, reason it is unavailable)
_warned: set[str] = set()  # reasons already warned about


def _missing_reason(exc: Exception) -> str:
    try:
        failure = BUILD_FAILURE_FILE.read_text(encoding="utf-8").strip()
    except OSError:  # no record: not built at all (e.g. torch missing at build time), or a broken install
        failure = ""
    if failure:
        return (
            f"building the compiled extension crossjepa._C failed at install time: {failure} "
            "(reinstall with CROSSJEPA_STRICT_BUILD=1 and -v to see the whole compiler output)"
        )
    return f"the compiled extension crossjepa._C could not be imported ({exc})"


def _load_extension():
    global _extension_state
    if _extension_state is None:
        try:
            from crossjepa import _C
        except (ImportError, OSError) as exc:
            _extension_state = (None, _missing_reason(exc))
        else:
            _extension_state = (_C, "")
    return _extension_state


def _resolve(op_name: str, device) -> tuple[str, str]:
    """(backend, reason for falling back to the reference or "")."""
    check_choice("op_name", op_name, OPS)
    try:
        device = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"device: expected a torch.device or a device string, got {device!r}") from exc
    ext, reason = _load_extension()
    if ext is None:
        return "torch", reason
    if device.type == "cpu":
        return "cpu", ""
    if device.type == "cuda":
        if ext.with_cuda():
            return "cuda", ""
        return "torch", "crossjepa._C was built without CUDA (rebuild with nvcc available or FORCE_CUDA=1)"
    return "torch", f"there is no compiled kernel for device type {device.type!r}"


def backend(op_name: str, device) -> str:
    """The implementation ``op_name`` uses on ``device``: "cuda", "cpu" (compiled kernels) or "torch"."""
    return _resolve(op_name, device)[0]


def extension_for(op_name: str, device: torch.device):
    """The extension module to run ``op_name`` with, or None for the torch reference (after warning, once per
    reason)."""
    name, reason = _resolve(op_name, device)
    if name == "torch":
        if reason not in _warned:
            _warned.add(reason)
            warnings.warn(
                f"crossjepa's point ops ({', '.join(OPS)}) run on the slower torch reference: {reason}",
                ReferenceFallbackWarning,
                stacklevel=3,
            )
        return None
    return _load_extension()[0]
