"""A minimal stand-in for torchvision, so that timm imports where torchvision is missing.

timm imports torchvision at module level (``FrozenBatchNorm2d``, the ``transforms`` module and
``InterpolationMode`` for its data pipeline, a few dataset classes in its dataset factory), but building
and running a model needs none of it except ``FrozenBatchNorm2d``. torchvision has no CPU build on the
package index that matches every torch, so when, and only when, ``import torchvision`` fails, crossjepa puts this
module tree into ``sys.modules`` for the time it takes to import timm (``standing_in``), and takes it out again:
the rest of the process sees torchvision as missing, as it is. A real torchvision is always preferred.

What the stand-in provides:
  torchvision.ops.misc.FrozenBatchNorm2d             a real implementation (same buffers as torchvision's)
  torchvision.transforms.functional.InterpolationMode a real enum (same members and values)
  torchvision.transforms.ToTensor                    a real implementation (PIL/ndarray HWC -> float CHW)
  torchvision.datasets.{CIFAR10, CIFAR100, MNIST, KMNIST, FashionMNIST, ImageFolder}
                                                     names only: constructing one raises RuntimeError
Any other attribute of these modules raises AttributeError (so ``from torchvision.x import y`` inside a
``try: ... except ImportError`` takes the fallback branch, as it would with an older torchvision), and
submodules not listed here (``torchvision.models``, ``torchvision.utils``, ...) do not exist.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.machinery
import logging
import sys
import types

import numpy as np
import torch
from torch import nn

__all__ = ["FrozenBatchNorm2d", "is_stub", "missing_torchvision", "standing_in"]

_log = logging.getLogger(__name__)
_VERSION = "0.0.0+crossjepa.stub"
_HINT = (
    "torchvision is not installed; crossjepa put a minimal stand-in in its place "
    "(crossjepa.teacher.torchvision_stub) that only supports building timm models"
)


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all buffers, nothing trainable)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Checkpoints of a regular BatchNorm2d carry a step counter that a frozen one has no use for.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


class ToTensor:
    """PIL image or HWC uint8 ndarray -> float CHW tensor in [0, 1] (timm subclasses this)."""

    def __call__(self, pic) -> torch.Tensor:
        arr = np.array(pic, copy=True)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        tensor = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        return tensor.float().div(255.0) if tensor.dtype == torch.uint8 else tensor.float()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"


def _unavailable_class(qualname: str) -> type:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{qualname} is not available: {_HINT}")

    return type(qualname.rsplit(".", 1)[1], (), {"__init__": __init__, "__module__": qualname.rsplit(".", 1)[0]})


def _module(name: str, attrs: dict) -> types.ModuleType:
    module = types.ModuleType(name, f"crossjepa stand-in for {name} (see crossjepa.teacher.torchvision_stub)")
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__path__ = []  # a package, so unknown submodules raise ModuleNotFoundError
    module.__file__ = __file__
    module.__dict__.update(attrs)

    def __getattr__(attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise AttributeError(f"{name}.{attr} is not available: {_HINT}")

    module.__getattr__ = __getattr__
    return module


def _build() -> dict[str, types.ModuleType]:
    misc = _module("torchvision.ops.misc", {"FrozenBatchNorm2d": FrozenBatchNorm2d})
    ops = _module("torchvision.ops", {"misc": misc, "FrozenBatchNorm2d": FrozenBatchNorm2d})
    functional = _module("torchvision.transforms.functional", {"InterpolationMode": InterpolationMode})
    transforms = _module(
        "torchvision.transforms",
        {"functional": functional, "InterpolationMode": InterpolationMode, "ToTensor": ToTensor},
    )
    dataset_names = ("CIFAR10", "CIFAR100", "MNIST", "KMNIST", "FashionMNIST", "ImageFolder")
    datasets = _module(
        "torchvision.datasets", {n: _unavailable_class(f"torchvision.datasets.{n}") for n in dataset_names}
    )
    root = _module("torchvision", {"__version__": _VERSION, "ops": ops, "transforms": transforms, "datasets": datasets})
    return {m.__name__: m for m in (root, ops, misc, transforms, functional, datasets)}


def is_stub(module: types.ModuleType | None = None) -> bool:
    """True if ``module`` (default: the imported ``torchvision``) is this stand-in."""
    module = sys.modules.get("torchvision") if module is None else module
    return getattr(module, "__version__", None) == _VERSION


def missing_torchvision() -> tuple[int, str] | None:
    """None when torchvision imports; else (log level, why not): not installed (INFO), or installed but broken,
    e.g. built for another torch so that its C++ ops fail to load (WARNING)."""
    try:
        import torchvision  # noqa: F401

        return None
    except ModuleNotFoundError as exc:
        if exc.name == "torchvision":
            return logging.INFO, "torchvision is not installed"
        return logging.WARNING, f"torchvision failed to import ({exc})"
    except (ImportError, RuntimeError, OSError, AttributeError) as exc:
        return logging.WARNING, f"torchvision failed to import ({type(exc).__name__}: {exc})"


def _drop_torchvision() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


@contextlib.contextmanager
def standing_in(level: int, reason: str):
    """The stand-in in ``sys.modules`` while the block runs (timm's import) and gone after it: timm keeps the few
    objects it took, and nothing else in the process finds a torchvision that is not installed. Logs `reason`
    at `level`; timm is imported once per process, so that is once."""
    _drop_torchvision()  # a half-imported broken torchvision
    sys.modules.update(_build())
    _log.log(level, "%s: timm imported with crossjepa's minimal torchvision stand-in (%s)", reason, __name__)
    try:
        yield
    finally:
        _drop_torchvision()
