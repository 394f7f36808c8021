"""Pretraining: the loop, checkpoints, torchrun support."""

from .config import OptimConfig, TrainConfig

__all__ = ["OptimConfig", "TrainConfig"]
