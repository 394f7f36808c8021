"""A PNG grid of rendered views so a person can look at them."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..atomic import atomic_target

_TITLE_HEIGHT = 14
_GAP = 2


def save_view_grid(images, path, titles=None):
    """Write images (B, V, 3, H, W) in [0, 1] as one PNG: a row per object, a column per view.

    `titles` (B strings, optional) label the rows. The file is written to a temporary name beside `path` and
    renamed, so a reader never sees a partial PNG. Returns the path.
    """
    if not torch.is_tensor(images) or images.dim() != 5 or images.shape[2] != 3:
        raise ValueError(f"images: expected a tensor (B, V, 3, H, W), got {getattr(images, 'shape', type(images))}")
    B, V, _, H, W = images.shape
    if titles is not None and len(titles) != B:
        raise ValueError(f"titles: expected {B} strings (one per row), got {len(titles)}")
    path = Path(path)
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
    row_h = H + (_TITLE_HEIGHT if titles is not None else 0)
    canvas = Image.new("RGB", (V * (W + _GAP) - _GAP, B * (row_h + _GAP) - _GAP), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for b in range(B):
        top = b * (row_h + _GAP)
        if titles is not None:
            draw.text((2, top + 1), str(titles[b]), fill=(0, 0, 0))
        for v in range(V):
            canvas.paste(Image.fromarray(np.ascontiguousarray(pixels[b, v])), (v * (W + _GAP), top + row_h - H))
    with atomic_target(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path
