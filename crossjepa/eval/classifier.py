"""Classification model for fine-tuning: the point encoder plus Point-MAE's MLP head, and its layer-wise
optimizer groups."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..models.config import preset_config
from ..models.encoder import PointEncoder
from ..train.checkpoint import load_pretrained
from ..train.optim import no_weight_decay
from ..validate import check_int


class PointClassifier(nn.Module):
    """(B, P, 3) points -> logits (B, classes). The head reads concat(cls, max, mean) of the encoder's output
    tokens (Point-MAE reads concat(cls, max); the mean is cheap and helps small sets)."""

    def __init__(self, encoder: nn.Module, num_classes: int, hidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        self.encoder = encoder
        width = encoder.width
        self.head = nn.Sequential(
            nn.Linear(3 * width, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, points: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        tokens = self.encoder(points, generator)
        patches = tokens[:, 1:]
        return self.head(torch.cat([tokens[:, 0], patches.amax(dim=1), patches.mean(dim=1)], dim=-1))


def _layer(name: str, depth: int) -> int:
    """0: tokenizer, positions, cls; 1..depth: the transformer blocks; depth + 1: final norm and head."""
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    if name.startswith(("encoder.norm", "head.")):
        return depth + 1
    return 0


def layerwise_groups(model: PointClassifier, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW parameter groups: lr * layer_decay ** (depth + 1 - layer), weight decay by pretraining's rule
    (train/optim.no_weight_decay)."""
    depth = len(model.encoder.blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer, decay = _layer(name, depth), not no_weight_decay(name, p)
        group = groups.setdefault(
            (layer, decay),
            {"params": [], "lr": lr * layer_decay ** (depth + 1 - layer), "weight_decay": weight_decay * decay},
        )
        group["params"].append(p)
    return [groups[key] for key in sorted(groups)]


class EncoderSource:
    """Where the encoders of a fine-tuning / few-shot run come from: copies of a pretrained one, or random
    inits drawn from torch's global RNG (the caller seeds it per run)."""

    def __init__(self, checkpoint: str | None, random_init: bool, preset: str = "default") -> None:
        if bool(checkpoint) == bool(random_init):
            raise ValueError("--checkpoint or --random-init: expected exactly one of them")
        self.pretrained = load_pretrained(checkpoint).encoder if checkpoint else None
        if self.pretrained is not None:
            self.name = str(checkpoint)
            self.tokenizer_cfg, self.encoder_cfg = self.pretrained.tokenizer.cfg, self.pretrained.cfg
        else:
            config = preset_config(preset)
            self.name = f"random-init ({preset})"
            self.tokenizer_cfg, self.encoder_cfg = config.tokenizer, config.encoder
        self.num_points = self.tokenizer_cfg.num_points

    def __call__(self) -> PointEncoder:
        if self.pretrained is not None:
            return copy.deepcopy(self.pretrained)
        return PointEncoder(self.tokenizer_cfg, self.encoder_cfg)
