"""Transformer building blocks shared by the point encoder and the predictor."""

from __future__ import annotations

import torch
from torch import nn

from ..kernels import attention


def init_weights(module: nn.Module) -> None:
    """ViT-style init: truncated-normal linears, unit LayerNorms (apply with `model.apply`)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability p (training only)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        # crossjepa.kernels.attention is the one attention entry point: it picks the fused Triton kernel or
        # torch SDPA for the shape/device.
        out = attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Sequential):
    def __init__(self, width: int, ratio: float) -> None:
        hidden = int(round(width * ratio))
        super().__init__(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))


class Block(nn.Module):
    """Pre-norm transformer block; with `cond_width` a condition vector modulates it (adaLN): per-channel
    shift/scale after each LayerNorm and a gate on each residual branch, from a zero-initialised linear, so
    the block starts as a plain pre-norm block (not the identity, which would cut the encoder off from the
    loss until the gates grow) and learns how much the view should reshape it."""

    def __init__(
        self, width: int, heads: int, mlp_ratio: float, drop_path: float = 0.0, cond_width: int | None = None
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, mlp_ratio)
        self.drop_path = DropPath(drop_path)
        self.modulation = None
        if cond_width is not None:
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_width, 6 * width))

    def init_modulation(self) -> None:
        if self.modulation is not None:
            nn.init.zeros_(self.modulation[1].weight)
            nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.modulation is None:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        if cond is None:
            raise ValueError("cond: expected a (B, C) condition tensor for an adaLN block, got None")
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond)[:, None].chunk(6, dim=-1)
        x = x + self.drop_path((1 + gate1) * self.attn(self.norm1(x) * (1 + scale1) + shift1))
        return x + self.drop_path((1 + gate2) * self.mlp(self.norm2(x) * (1 + scale2) + shift2))
