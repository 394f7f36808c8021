"""Evaluation: encoder features and the linear-SVM probe."""

from .features import extract_features
from .probe import cross_validated_probe, linear_probe, probe_encoder

__all__ = ["cross_validated_probe", "extract_features", "linear_probe", "probe_encoder"]
