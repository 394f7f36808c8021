"""Per-view colour histograms over foreground pixels."""

import torch

from ..validate import check_int


def color_histogram(image, mask, bins=8):
    """Histogram (..., 3 * bins) of image (..., 3, H, W) in [0, 1] over pixels where mask (..., 1, H, W) is True.

    Each channel's `bins` entries sum to 1. An empty mask gives the uniform histogram (1 / bins), so the
    invariant holds and no NaN appears.
    """
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"image: expected shape (..., 3, H, W), got {tuple(image.shape)}")
    if mask.shape != image.shape[:-3] + (1,) + image.shape[-2:]:
        raise ValueError(
            f"mask: expected shape {tuple(image.shape[:-3]) + (1,) + tuple(image.shape[-2:])}, got {tuple(mask.shape)}"
        )
    check_int("bins", bins, 1)
    lead = image.shape[:-3]
    values = image.reshape(-1, 3, image.shape[-2] * image.shape[-1]).float()
    weight = mask.reshape(-1, 1, values.shape[-1]).expand_as(values).float()
    idx = (values * bins).floor().long().clamp(0, bins - 1)
    counts = values.new_zeros(values.shape[0], 3, bins).scatter_add_(2, idx, weight)
    total = counts.sum(-1, keepdim=True)
    hist = torch.where(total > 0, counts / total.clamp_min(1), torch.full_like(counts, 1.0 / bins))
    return hist.reshape(lead + (3 * bins,))
