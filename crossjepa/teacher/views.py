"""Where the cached views come from.

A view source is a callable ``source(indices: list[int]) -> (images, poses[, masks])`` for a batch of
object indices: images (B, V, 3, H, W) float in [0, 1], poses (B, V, 4, 4) camera-to-world float32 and
optionally masks (B, V, 1, H, W) bool (foreground, for the colour histograms). It should also carry
``num_views`` (int) and ``settings`` (a JSON-able dict that identifies the views; it goes into the cache's
meta.json and a finished cache is only reused when it matches). It must be deterministic: a resumed cache
build calls it again for the objects that were not finished.

``RenderedViews`` (the default) renders each object's points with crossjepa.render at poses on a sphere;
renders read from disk plug in through the same call.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from crossjepa import render

from ..validate import check_int

__all__ = ["RenderedViews", "describe_view_source", "foreground_from_background", "read_view_batch"]

_SPHERE_DEFAULTS = {k: p.default for k, p in inspect.signature(render.sphere_poses).parameters.items()}
_RENDER_DEFAULTS = {k: p.default for k, p in inspect.signature(render.render_points).parameters.items()}


class RenderedViews:
    """``num_views`` views per object, rendered by crossjepa.render at ``image_size``.

    Cameras: ``render.sphere_poses`` (renderer defaults for radius and elevations unless given). With
    ``azimuth_seed`` set, every object's ring is turned by its own azimuth, drawn from (seed, object index)
    alone, so it does not depend on batching or order.
    """

    def __init__(
        self,
        dataset,
        num_views: int = 8,
        image_size: int = 224,
        *,
        radius: float | None = None,
        elevations_deg: tuple[float, ...] | None = None,
        fov_deg: float | None = None,
        point_radius: float | None = None,
        shading: str = "normal",
        azimuth_seed: int | None = None,
        device: str | torch.device = "cpu",
    ):
        check_int("num_views", num_views, 1)
        check_int("azimuth_seed", azimuth_seed, 0, optional=True)
        self.dataset = dataset
        self.num_views = num_views
        self.image_size = image_size
        self.radius = float(_SPHERE_DEFAULTS["radius"] if radius is None else radius)
        self.elevations_deg = tuple(
            float(e) for e in (_SPHERE_DEFAULTS["elevations_deg"] if elevations_deg is None else elevations_deg)
        )
        self.fov_deg = float(_RENDER_DEFAULTS["fov_deg"] if fov_deg is None else fov_deg)
        self.point_radius = None if point_radius is None else float(point_radius)
        self.shading = shading
        self.azimuth_seed = azimuth_seed
        self.device = torch.device(device)

    @property
    def settings(self) -> dict:
        return {
            "source": "render",
            "num_views": self.num_views,
            "image_size": self.image_size,
            "radius": self.radius,
            "elevations_deg": list(self.elevations_deg),
            "fov_deg": self.fov_deg,
            "point_radius": "auto" if self.point_radius is None else self.point_radius,
            "shading": self.shading,
            "azimuth_seed": self.azimuth_seed,
        }

    def azimuth_offset(self, index: int) -> float:
        if self.azimuth_seed is None:
            return 0.0
        return float(np.random.default_rng([self.azimuth_seed, index]).uniform(0.0, 360.0))

    def poses(self, index: int) -> torch.Tensor:
        return render.sphere_poses(
            self.num_views,
            radius=self.radius,
            elevations_deg=self.elevations_deg,
            azimuth_offset_deg=self.azimuth_offset(index),
        )

    def __call__(self, indices):
        clouds = [torch.as_tensor(self.dataset[i]["points"], dtype=torch.float32) for i in indices]
        poses = torch.stack([self.poses(i) for i in indices]).to(self.device)
        # One batched render when the clouds have equal sizes; otherwise one object at a time.
        groups = (
            [list(range(len(clouds)))] if len({c.shape for c in clouds}) == 1 else [[j] for j in range(len(clouds))]
        )
        images, masks = [], []
        for group in groups:
            out = render.render_points(
                torch.stack([clouds[j] for j in group]).to(self.device),
                poses[group],
                image_size=self.image_size,
                fov_deg=self.fov_deg,
                point_radius=self.point_radius,
                shading=self.shading,
            )
            images.append(out.image)
            masks.append(out.mask)
        return torch.cat(images), poses, torch.cat(masks)


def describe_view_source(source) -> dict:
    """The JSON-able identity of a view source (its ``settings``, or its qualified name)."""
    settings = getattr(source, "settings", None)
    if settings is None:
        kind = source if inspect.isfunction(source) or inspect.isclass(source) else type(source)
        return {"source": f"{kind.__module__}.{kind.__qualname__}"}
    if not isinstance(settings, dict):
        raise TypeError(f"view_source.settings: expected a dict, got {type(settings).__name__}")
    return settings


def foreground_from_background(images: torch.Tensor, tol: float = 1.5 / 255) -> torch.Tensor:
    """Masks (..., 1, H, W) for views on a flat background: pixels that differ from the top-left pixel."""
    background = images[..., :, :1, :1]
    return ((images - background).abs() > tol).any(dim=-3, keepdim=True)


def read_view_batch(source, indices: list[int], num_views: int):
    """Call ``source`` and check its output -> (images f32, poses f32 CPU, masks bool)."""
    out = source(indices)
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        raise TypeError("view_source: expected it to return (images, poses) or (images, poses, masks)")
    images, poses = torch.as_tensor(out[0]), torch.as_tensor(out[1])
    b = len(indices)
    if images.ndim != 5 or tuple(images.shape[:3]) != (b, num_views, 3):
        raise ValueError(f"view_source: expected images ({b}, {num_views}, 3, H, W), got {tuple(images.shape)}")
    if tuple(poses.shape) != (b, num_views, 4, 4):
        raise ValueError(f"view_source: expected poses ({b}, {num_views}, 4, 4), got {tuple(poses.shape)}")
    masks = out[2] if len(out) == 3 and out[2] is not None else foreground_from_background(images)
    masks = torch.as_tensor(masks).to(images.device, torch.bool)
    if masks.shape != images.shape[:2] + (1,) + images.shape[3:]:
        raise ValueError(
            f"view_source: expected masks {tuple(images.shape[:2]) + (1,) + tuple(images.shape[3:])}, "
            f"got {tuple(masks.shape)}"
        )
    return images.float(), poses.detach().to("cpu", torch.float32), masks
