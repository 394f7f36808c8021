"""Point-cloud ops: farthest-point sampling, k-nearest neighbours and grouping.

Each op validates its input, then runs the compiled C++ (OpenMP) or CUDA kernel of ``crossjepa._C`` for the
tensor's device, or the plain-torch reference (with one warning naming the reason) when no kernel is available.
"""

from crossjepa.ops.dispatch import ReferenceFallbackWarning, backend
from crossjepa.ops.points import farthest_point_sample, group, knn
from crossjepa.ops.reference import farthest_point_sample_reference, group_reference, knn_reference

__all__ = [
    "ReferenceFallbackWarning",
    "backend",
    "farthest_point_sample",
    "farthest_point_sample_reference",
    "group",
    "group_reference",
    "knn",
    "knn_reference",
]
