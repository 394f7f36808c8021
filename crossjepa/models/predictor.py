"""Predictor: encoder tokens + one view query -> the teacher's embedding of that view."""

from __future__ import annotations

import torch
from torch import nn

from .config import PredictorConfig
from .layers import Block, init_weights


class Predictor(nn.Module):
    """Small transformer over [query, encoder tokens] for every view; the query's output is mapped to the
    teacher width. The condition enters as the query token ("token"), through adaLN modulation of every block
    ("adaln"), or both. Encoder tokens are computed once per object and shared by all its views."""

    def __init__(self, cfg: PredictorConfig, encoder_width: int, teacher_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.use_token = cfg.conditioning in ("token", "both")
        use_adaln = cfg.conditioning in ("adaln", "both")
        self.in_proj = nn.Linear(encoder_width, cfg.width)
        self.query = nn.Parameter(torch.zeros(1, 1, cfg.width))
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.heads, cfg.mlp_ratio, rate, cond_width=cfg.width if use_adaln else None)
            for rate in rates
        )
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, teacher_dim)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.query, std=0.02)
        for block in self.blocks:
            block.init_modulation()

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, W_enc), cond (B, V, width) -> predictions (B, V, teacher_dim)."""
        if tokens.ndim != 3 or cond.ndim != 3 or cond.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"cond: expected (B, V, C) with B = {tokens.shape[0]} to match tokens "
                f"{tuple(tokens.shape)}, got {tuple(cond.shape)}"
            )
        b, v, _ = cond.shape
        x = self.in_proj(tokens)  # once per object, before the per-view expansion
        x = x[:, None].expand(-1, v, -1, -1).reshape(b * v, x.shape[1], x.shape[2])
        cond = cond.reshape(b * v, -1)
        query = self.query.expand(b * v, -1, -1)
        if self.use_token:
            query = query + cond[:, None]
        x = torch.cat([query, x], dim=1)
        for block in self.blocks:
            x = block(x, cond)
        return self.head(self.norm(x[:, 0])).reshape(b, v, -1)
