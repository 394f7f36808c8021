"""Point encoder: tokenizer + pre-norm transformer with a cls token; positions added before every block."""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function

from .config import EncoderConfig, TokenizerConfig
from .layers import Block, init_weights
from .tokenizer import Tokenizer


class PointEncoder(nn.Module):
    def __init__(self, tokenizer: TokenizerConfig, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.width = cfg.width
        self.tokenizer = Tokenizer(tokenizer, cfg.width)
        self.pos_embed = nn.Sequential(
            nn.Linear(3, tokenizer.pos_hidden), nn.GELU(), nn.Linear(tokenizer.pos_hidden, cfg.width)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, cfg.width))
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio, rate) for rate in rates)
        self.norm = nn.LayerNorm(cfg.width)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.cls_pos, std=0.02)

    def forward(self, points: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, P, 3) -> output tokens (B, 1 + G, W), cls first. `generator` drives a random FPS start."""
        return self.layer_outputs(points, generator, 1)[-1]

    def layer_outputs(
        self, points: torch.Tensor, generator: torch.Generator | None = None, last: int = 1
    ) -> list[torch.Tensor]:
        """The last `last` blocks' outputs, each through the final norm: a list of (B, 1 + G, W)."""
        with record_function("tokenizer"):  # profiler ranges (crossjepa profile's per-stage breakdown)
            patches, centers = self.tokenizer(points, generator)
        with record_function("encoder"):
            b = patches.shape[0]
            x = torch.cat([self.cls_token.expand(b, -1, -1), patches], dim=1)
            pos = torch.cat([self.cls_pos.expand(b, -1, -1), self.pos_embed(centers)], dim=1)
            outputs = []
            for i, block in enumerate(self.blocks):
                x = block(x + pos)
                if i >= len(self.blocks) - last:
                    outputs.append(self.norm(x))
            return outputs

    def features(self, points: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Probe features (B, 2W): concat(max, mean) over the G patch tokens, averaged over the last
        `readout_layers` blocks' outputs.

        The cls token is left out, so the features pool only tokens computed from the points themselves."""
        layers = self.layer_outputs(points, generator, self.cfg.readout_layers)
        patches = torch.stack(layers).mean(dim=0)[:, 1:]
        return torch.cat([patches.amax(dim=1), patches.mean(dim=1)], dim=-1)
