"""Point-cloud data: public formats, the packed format, synthetic shapes and loaders.

``make_loader`` and ``SyntheticShapes`` are imported on first use, so ``import crossjepa.data`` stays light
(no DALI, no renderer) and the loader modules can import from this package freely.
"""

from .base import CorruptFileError, PointCloudDataset, SplitNotFound
from .formats import open_dataset
from .packed import PackedDataset
from .packing import pack

__all__ = [
    "open_dataset",
    "make_loader",
    "pack",
    "PackedDataset",
    "PointCloudDataset",
    "SyntheticShapes",
    "CorruptFileError",
    "SplitNotFound",
]


def __getattr__(name):
    if name == "make_loader":
        from .backends import make_loader

        return make_loader
    if name == "SyntheticShapes":
        from .synthetic import SyntheticShapes

        return SyntheticShapes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
