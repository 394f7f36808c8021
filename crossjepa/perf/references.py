"""What our fast paths are measured against, and the synthetic batches every benchmark feeds.

- `as_reference(model)`: the same model (a copy, same weights) running what a straightforward port would: the
  plain-torch *_reference point ops, torch SDPA attention and Point-MAE's Conv1d patch embedding
  (`ConvPatchEmbed`); the bench runs it in fp32 eager and, on a GPU, under torch.compile in bf16.
- `point_mae_tokenizer(tokenizer)`: the tokenizer as Point-MAE groups points: pointnet2_ops FPS when
  importable (the torch reference FPS otherwise, and the row says so), `torch.cdist` + `topk` kNN; with the
  Conv1d patch embedding.
- `with_conv_patch_embed(module)`: a copy of any module holding Tokenizers whose patch embedding is
  `ConvPatchEmbed` (crossjepa's previous one) with the same weights: the before/after rows of the bench, and
  the old implementation the tests check the new one and old checkpoints against.
- `previous_renderer()`: the renderer's hole filling as it was before the log-step window minima (max-pooling
  windows, a cost per pixel that grows with the window): the cache bench's before row and the reference the
  tests compare the new one with.
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
import torch.nn.functional as F

from ..models.config import TokenizerConfig
from ..models.layers import Attention
from ..models.tokenizer import PatchEmbed, Tokenizer
from ..ops import farthest_point_sample_reference, group_reference
from ..render import random_poses, splat
from .inputs import ball_clouds


class ConvPatchEmbed(torch.nn.Module):
    """crossjepa's patch embedding before the channels-last one (crossjepa.models.tokenizer.PatchEmbed), as
    Point-MAE writes it: Conv1d(k=1) + BatchNorm1d over (B*G, C, k), the pooled feature concatenated to every
    point. Same parameter names; its weights are PatchEmbed's with a trailing kernel dimension of 1."""

    def __init__(self, cfg: TokenizerConfig, width: int) -> None:
        super().__init__()
        nn = torch.nn
        self.local = nn.Sequential(
            nn.Conv1d(3, cfg.local_hidden, 1),
            nn.BatchNorm1d(cfg.local_hidden),
            nn.ReLU(inplace=True),
            nn.Conv1d(cfg.local_hidden, cfg.local_out, 1),
        )
        self.merge = nn.Sequential(
            nn.Conv1d(2 * cfg.local_out, cfg.global_hidden, 1),
            nn.BatchNorm1d(cfg.global_hidden),
            nn.ReLU(inplace=True),
            nn.Conv1d(cfg.global_hidden, width, 1),
        )

    def forward(self, neighbourhoods: torch.Tensor) -> torch.Tensor:
        b, g, k, _ = neighbourhoods.shape
        x = self.local(neighbourhoods.reshape(b * g, k, 3).transpose(1, 2))  # (BG, C, k)
        pooled = x.amax(dim=2, keepdim=True)
        x = self.merge(torch.cat([pooled.expand(-1, -1, k), x], dim=1))
        return x.amax(dim=2).reshape(b, g, -1)


def conv_patch_embed(embed: PatchEmbed, cfg: TokenizerConfig) -> ConvPatchEmbed:
    """A ConvPatchEmbed computing what `embed` does: its weights (and BatchNorm state) with a kernel dim."""
    weight = embed.merge[3].weight
    conv = ConvPatchEmbed(cfg, weight.shape[0]).to(weight.device, weight.dtype)
    conv.load_state_dict({k: v.unsqueeze(-1) if v.ndim == 2 else v for k, v in embed.state_dict().items()})
    return conv.train(embed.training)


def with_conv_patch_embed(module: torch.nn.Module) -> torch.nn.Module:
    out = copy.deepcopy(module)
    for sub in out.modules():
        if isinstance(sub, Tokenizer) and isinstance(sub.embed, PatchEmbed):
            sub.embed = conv_patch_embed(sub.embed, sub.cfg)
    return out


def pointnet2_fps():
    """(pointnet2_ops' furthest_point_sample or None, why not)."""
    try:
        from pointnet2_ops import pointnet2_utils
    except ImportError:
        return None, "pointnet2_ops not installed"
    return pointnet2_utils.furthest_point_sample, ""


def cdist_knn(queries: torch.Tensor, points: torch.Tensor, k: int):
    """kNN the way most point-transformer code does it: all distances, then topk -> (dists, idx)."""
    return torch.cdist(queries.float(), points.float()).topk(k, dim=-1, largest=False, sorted=True)


def cdist_group(points: torch.Tensor, centers: torch.Tensor, k: int):
    """Neighbourhoods (B, M, k, 3) centred on their centers, by cdist + topk + gather."""
    b, m = centers.shape[:2]
    _, idx = cdist_knn(centers, points, k)
    picked = points.gather(1, idx.reshape(b, m * k, 1).expand(-1, -1, 3)).reshape(b, m, k, 3)
    return picked - centers.unsqueeze(2), idx


class ReferenceTokenizer(Tokenizer):
    """The tokenizer on the plain-torch reference ops."""

    def sample_centers(self, points, start, generator):
        return farthest_point_sample_reference(points, self.cfg.num_groups, start, generator=generator)

    def neighbourhoods(self, points, centers):
        return group_reference(points, centers, self.cfg.group_size)[0]


class PointMAETokenizer(ReferenceTokenizer):
    """Point-MAE's grouping: pointnet2_ops FPS (CUDA) when importable, else the reference FPS; cdist + topk kNN."""

    def sample_centers(self, points, start, generator):
        fps, _ = pointnet2_fps()
        if fps is not None and points.is_cuda:
            return fps(points.float().contiguous(), self.cfg.num_groups).long()
        return super().sample_centers(points, start, generator)

    def neighbourhoods(self, points, centers):
        return cdist_group(points, centers, self.cfg.group_size)[0]


def point_mae_backend(device: torch.device) -> str:
    fps, _ = pointnet2_fps()
    return "pointnet2_ops+cdist" if fps is not None and device.type == "cuda" else "torch-ref-fps+cdist"


class SdpaAttention(Attention):
    """Attention straight on torch SDPA (no dispatcher, no Triton)."""

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


def _swap(module: torch.nn.Module, swaps: dict) -> torch.nn.Module:
    """A deep copy of module whose submodules of an exact class in `swaps` get the replacement class (same
    parameters and buffers: the replacements only override methods)."""
    out = copy.deepcopy(module)
    for sub in out.modules():
        if type(sub) in swaps:
            sub.__class__ = swaps[type(sub)]
    return out


def as_reference(model: torch.nn.Module) -> torch.nn.Module:
    return _swap(with_conv_patch_embed(model), {Tokenizer: ReferenceTokenizer, Attention: SdpaAttention})


def reference_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    return _swap(with_conv_patch_embed(tokenizer), {Tokenizer: ReferenceTokenizer})


def point_mae_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    return _swap(with_conv_patch_embed(tokenizer), {Tokenizer: PointMAETokenizer})


def synthetic_batch(
    model, batch: int, views: int, device, generator: torch.Generator, num_points: int | None = None
) -> dict:
    """One training step's inputs for `model` (a CrossJEPA): random clouds, random cameras, random colour
    histograms and random standardised teacher targets (the loss needs no real teacher to be timed)."""
    cfg = model.config
    num_points = num_points or cfg.tokenizer.num_points
    bins = cfg.condition.histogram_bins
    hist = torch.rand(batch, views, 3, bins, generator=generator)
    target = torch.randn(batch, views, cfg.teacher_dim, generator=generator)
    batch_inputs = {
        "points": ball_clouds(batch, num_points, generator),
        "target": target,
        "poses": random_poses(batch * views, generator).reshape(batch, views, 4, 4),
        "histograms": (hist / hist.sum(-1, keepdim=True)).reshape(batch, views, 3 * bins),
        "mean": target.mean(dim=(0, 1)),
        "std": target.std(dim=(0, 1)),
    }
    return {k: v.to(device) for k, v in batch_inputs.items()}


def pooled_window_min(x, size, dim):
    """The previous `splat._window_min` (floats only): a min-pool, whose cost per element grows with `size`."""
    kernel = (1, size) if dim == -1 else (size, 1)
    return -F.max_pool2d(-x.unsqueeze(1), kernel, stride=1).squeeze(1)


def pooled_nearest_keys(keys, reach):
    """The previous `splat._nearest_keys`: the key of the window's nearest pixel, found by two arg-max pools of
    the negated depth (ties: the pool's scan order, where the new one takes the lowest point index; they differ
    only for distinct points at exactly equal depth)."""
    depth = torch.where(keys != splat._EMPTY, (keys >> 32).to(torch.int32).view(torch.float32), math.inf)
    k, flat = 2 * reach + 1, keys.flatten(1)
    rows, row_idx = F.max_pool2d(-depth.unsqueeze(1), (1, k), stride=1, padding=(0, reach), return_indices=True)
    _, col_idx = F.max_pool2d(rows, (k, 1), stride=1, padding=(reach, 0), return_indices=True)
    return flat.gather(1, row_idx.flatten(1).gather(1, col_idx.flatten(1))).view_as(keys)


@contextlib.contextmanager
def previous_renderer():
    """Within the block, crossjepa.render fills holes as it did before the log-step window minima (the cache
    bench's before row, and the reference its tests compare with): `pooled_window_min`, `pooled_nearest_keys`."""
    current = splat._window_min, splat._nearest_keys
    splat._window_min, splat._nearest_keys = pooled_window_min, pooled_nearest_keys
    try:
        yield
    finally:
        splat._window_min, splat._nearest_keys = current
