"""The CrossJEPA model: point encoder (kept after pretraining) + view conditioner + predictor."""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function

from .conditioning import ViewConditioner
from .config import ModelConfig
from .encoder import PointEncoder
from .predictor import Predictor


class CrossJEPA(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = PointEncoder(config.tokenizer, config.encoder)
        self.conditioner = ViewConditioner(config.condition, config.predictor.width)
        self.pooled_input = config.predictor.input == "pooled"
        in_width = 2 * config.encoder.width if self.pooled_input else config.encoder.width
        self.predictor = Predictor(config.predictor, in_width, config.teacher_dim)

    def forward(
        self,
        points: torch.Tensor,
        poses: torch.Tensor,
        histograms: torch.Tensor | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """points (B, P, 3), poses (B, V, 4, 4) camera-to-world, histograms (B, V, 3*bins) (None when
        condition.use_histogram is off)
        -> predicted standardised teacher embeddings (B, V, teacher_dim).

        The encoder runs once per object; the predictor runs on all B*V views in one batch."""
        if poses.ndim != 4 or poses.shape[0] != points.shape[0]:
            raise ValueError(f"poses: expected (B, V, 4, 4) with B = {points.shape[0]}, got {tuple(poses.shape)}")
        if self.pooled_input:  # one token: exactly the features the probe reads
            tokens = self.encoder.features(points, generator)[:, None]
        else:
            tokens = self.encoder(points, generator)
        with record_function("predictor"):  # profiler range (crossjepa profile); conditioning included
            return self.predictor(tokens, self.conditioner(poses, histograms))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_parameters(model: CrossJEPA) -> dict[str, int]:
    """Trainable parameter counts per part; `trainable` is the whole model (encoder + predictor +
    conditioner), `total` includes frozen parameters."""
    return {
        "encoder": _count(model.encoder),
        "predictor": _count(model.predictor),
        "conditioner": _count(model.conditioner),
        "trainable": _count(model),
        "total": sum(p.numel() for p in model.parameters()),
    }


def describe(model: CrossJEPA) -> str:
    """A few lines for the log: parameter counts and the main shape of each part."""
    counts = count_parameters(model)
    cfg = model.config
    t, e, p, c = cfg.tokenizer, cfg.encoder, cfg.predictor, cfg.condition
    inputs = ([f"pose ({c.rotation_frame} {c.rotation_format}, {c.frequencies} bands)"] if c.use_pose else []) + (
        [f"histogram ({c.histogram_bins} bins)"] if c.use_histogram else []
    )
    return "\n".join(
        [
            f"encoder     {counts['encoder'] / 1e6:7.3f}M  {t.num_points} pts -> {t.num_groups} groups x "
            f"{t.group_size}, width {e.width}, depth {e.depth}, heads {e.heads}, mlp x{e.mlp_ratio}",
            f"predictor   {counts['predictor'] / 1e6:7.3f}M  width {p.width}, depth {p.depth}, heads {p.heads}, "
            f"mlp x{p.mlp_ratio}, conditioning {p.conditioning}, -> {cfg.teacher_dim}",
            f"conditioner {counts['conditioner'] / 1e6:7.3f}M  {' + '.join(inputs)}",
            f"trainable   {counts['trainable'] / 1e6:7.3f}M",
        ]
    )
