"""Point cloud -> patch tokens: FPS centers, kNN neighbourhoods, mini-PointNet patch embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import farthest_point_sample, group
from .config import TokenizerConfig


class PointLinear(nn.Module):
    """Per-point linear layer on channels-last features (..., in) -> (..., out): what Conv1d(in, out, 1)
    computes on (N, in, k), as one GEMM (and one for its weight gradient) with no layout change.

    Not an nn.Linear on purpose: the encoder's ViT init (layers.init_weights) re-initialises every nn.Linear,
    and this layer keeps the Conv1d's default init, U(+-1/sqrt(fan_in)) for weight and bias (the same draws,
    in the same order, as the Conv1d it replaces). Loads Conv1d weights (out, in, 1) from older checkpoints.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # bound 1/sqrt(fan_in), as Conv1d and Linear
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Every loading path (load_state_dict, load_pretrained, checkpoints) passes through here; the dict is
        # load_state_dict's own shallow copy.
        weight = state_dict.get(prefix + "weight")
        if isinstance(weight, torch.Tensor) and weight.ndim == 3 and weight.shape[2] == 1:  # Conv1d(k=1) layout
            state_dict[prefix + "weight"] = weight.squeeze(2)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


class PatchEmbed(nn.Module):
    """Mini-PointNet over one neighbourhood: per-point 3 -> local_hidden -> local_out, max-pool, concat the pooled
    feature to every point, 2*local_out -> global_hidden -> width, max-pool -> one token.

    Points are rows (B*G*k, C): every layer is a GEMM and BatchNorm1d normalises over all points, as the
    original Conv1d(k=1) + BatchNorm1d over (B*G, C, k) does (same parameters, names and statistics). The concat
    is never built: merge.0's weight is [W_pooled | W_point], and W_pooled @ pooled is computed once per group
    and broadcast-added to W_point @ x.
    """

    def __init__(self, cfg: TokenizerConfig, width: int) -> None:
        super().__init__()
        self.local = nn.Sequential(
            PointLinear(3, cfg.local_hidden),
            nn.BatchNorm1d(cfg.local_hidden),
            nn.ReLU(inplace=True),
            PointLinear(cfg.local_hidden, cfg.local_out),
        )
        self.merge = nn.Sequential(
            PointLinear(2 * cfg.local_out, cfg.global_hidden),
            nn.BatchNorm1d(cfg.global_hidden),
            nn.ReLU(inplace=True),
            PointLinear(cfg.global_hidden, width),
        )

    def forward(self, neighbourhoods: torch.Tensor) -> torch.Tensor:
        b, g, k, _ = neighbourhoods.shape
        x = self.local(neighbourhoods.reshape(b * g * k, 3))
        c = x.shape[1]
        x = x.view(b * g, k, c)
        first, norm, act, last = self.merge
        pooled = F.linear(x.amax(dim=1), first.weight[:, :c], first.bias)  # (BG, hidden), once per group
        h = F.linear(x, first.weight[:, c:]) + pooled.unsqueeze(1)  # (BG, k, hidden)
        h = last(act(norm(h.view(b * g * k, -1))))
        return h.view(b * g, k, -1).amax(dim=1).view(b, g, -1)


class Tokenizer(nn.Module):
    """(B, P, 3) points -> patch tokens (B, G, W) and their centers (B, G, 3)."""

    def __init__(self, cfg: TokenizerConfig, width: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = PatchEmbed(cfg, width)

    def group(self, points: torch.Tensor, generator: torch.Generator | None = None):
        """Centers (B, G, 3) by FPS and their centred kNN neighbourhoods (B, G, k, 3)."""
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points: expected a (B, P, 3) tensor, got shape {tuple(points.shape)}")
        need = max(self.cfg.num_groups, self.cfg.group_size)
        if points.shape[1] < need:
            raise ValueError(f"points: expected at least {need} points per cloud, got {points.shape[1]}")
        with torch.no_grad():
            idx = self.sample_centers(points, "random" if self.cfg.fps_start == "random" else 0, generator)
        centers = torch.gather(points, 1, idx[..., None].expand(-1, -1, 3))
        return centers, self.neighbourhoods(points, centers)

    # The two ops behind `group`; the benchmarks' reference tokenizers (perf/references.py) swap these alone.
    # No NaN/Inf scan here: it is a host sync per op on the GPU; clouds are checked where they enter (readers,
    # packing, the cache build), and the training loop guards the loss.
    def sample_centers(self, points: torch.Tensor, start, generator: torch.Generator | None) -> torch.Tensor:
        """(B, G) indices of the FPS centers."""
        return farthest_point_sample(points, self.cfg.num_groups, start, generator=generator, check_finite=False)

    def neighbourhoods(self, points: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """(B, G, k, 3) kNN neighbourhoods of `centers`, centred on them."""
        return group(points, centers, self.cfg.group_size, check_finite=False)[0]

    def forward(self, points: torch.Tensor, generator: torch.Generator | None = None):
        centers, neighbourhoods = self.group(points, generator)
        return self.embed(neighbourhoods), centers
