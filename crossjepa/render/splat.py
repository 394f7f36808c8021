"""Batched z-buffer point splatting in plain torch (CPU and CUDA).

Every point is drawn as a disc of `point_radius` pixels. All (point, footprint pixel) candidates are scored at
once; the z-buffer is one scatter_reduce(amin) over a packed int64 key (float32 depth bits << 32 | point index),
which resolves depth and ties (lowest point index) in a single deterministic pass. Views are processed in
chunks only to bound memory.
"""

import math
from typing import NamedTuple

import torch

from ..ops import knn
from ..validate import check_choice, check_int, check_positive
from .cameras import to_pixels, world_to_camera
from .eigen3 import smallest_eigenvectors

_EMPTY = torch.iinfo(torch.int64).max
_NEAR = 1e-3  # points closer than this to the camera plane are not drawn
_HOLE_TOL = 0.03  # relative depth step that separates a gap's far surface from the near one around it
_CHUNK = 1 << 23  # candidates (view x point x footprint pixel) per chunk, ~30 bytes each
SHADINGS = ("normal", "depth", "lambert")
# Lambert shading: a light above, left of and in front of the camera (camera space: x right, y down, z forward).
_LIGHT = (-0.4, -0.6, -0.7)
_AMBIENT = 0.15


class RenderOutput(NamedTuple):
    image: torch.Tensor  # (B, V, 3, H, W) float32 in [0, 1], black background
    mask: torch.Tensor  # (B, V, 1, H, W) bool, True where a point was drawn
    depth: torch.Tensor  # (B, V, 1, H, W) float32 camera-space z, 0 where empty


def default_point_radius(image_size, num_points):
    """Splat radius in pixels that closes most gaps between points of a unit-sphere cloud: 5 px for 2048 points
    at 224 px, shrinking with the square root of the point density (never below 1 px)."""
    return max(1.0, image_size / 224 * 5.0 * math.sqrt(2048 / num_points))


def estimate_normals(points, k=16):
    """Unoriented unit normals (B, P, 3) of points (B, P, 3) float32 (or float16/bfloat16): smallest principal
    axis of each point's k nearest neighbours (crossjepa.ops.knn); (0, 0, 1) where they all coincide."""
    k = min(k, points.shape[1])
    # Clouds are checked finite where they enter crossjepa; a scan here would cost a host sync per render.
    idx = knn(points, points, k, check_finite=False)[1]
    nbrs = torch.gather(
        points.unsqueeze(1).expand(-1, points.shape[1], -1, -1), 2, idx.unsqueeze(-1).expand(-1, -1, -1, 3)
    )
    nbrs = nbrs - nbrs.mean(dim=2, keepdim=True)
    # Closed form, not torch.linalg.eigh: cuSOLVER's batched eigh fails on a batch of one matrix per point.
    return smallest_eigenvectors(nbrs.transpose(-1, -2) @ nbrs)


def _footprint(radius, device):
    """Pixel offsets (dx, dy) whose centre can lie within `radius` of a point somewhere inside pixel (0, 0)."""
    r = math.ceil(radius + 0.5)
    off = torch.arange(-r, r + 1, device=device)
    dy, dx = (t.reshape(-1) for t in torch.meshgrid(off, off, indexing="ij"))
    reach = (dx.abs() - 0.5).clamp_min(0) ** 2 + (dy.abs() - 0.5).clamp_min(0) ** 2 <= radius**2
    return dx[reach], dy[reach], r


def _zbuffer(uv, z, size, radius):
    """Nearest-point keys (N, size * size) for N views of P points (uv (N, P, 2) pixels, z (N, P) depth)."""
    N, P = z.shape
    dx, dy, r = _footprint(radius, z.device)
    # Draw on a canvas with a margin of 2r + 1 pixels and crop it, so no footprint pixel needs a bounds check:
    # points far outside are clamped to just beyond the image, where their whole footprint stays in the margin.
    margin = 2 * r + 1
    wide = size + 2 * margin
    corner = uv.floor()
    x0 = corner[..., 0].long().clamp(-r - 1, size + r) + margin
    y0 = corner[..., 1].long().clamp(-r - 1, size + r) + margin
    pixel = (torch.arange(N, device=z.device).view(N, 1) * wide + y0) * wide + x0  # (N, P)
    # Positive float32 bits sort like the floats, so the smallest key is the nearest point (then lowest index).
    key = (z.clamp_min(_NEAR).contiguous().view(torch.int32).long() << 32) | torch.arange(P, device=z.device)
    key = torch.where(z > _NEAR, key, _EMPTY)
    frac = (uv - corner).unsqueeze(-2)  # position inside the pixel, (N, P, 1, 2)
    inside = ((dx + 0.5 - frac[..., 0]) ** 2 + (dy + 0.5 - frac[..., 1]) ** 2) <= radius**2  # (N, P, K)
    zbuf = torch.full((N * wide * wide,), _EMPTY, dtype=torch.int64, device=z.device)
    zbuf.scatter_reduce_(
        0,
        (pixel.unsqueeze(-1) + (dy * wide + dx)).reshape(-1),
        torch.where(inside, key.unsqueeze(-1), _EMPTY).reshape(-1),
        reduce="amin",
    )
    return zbuf.view(N, wide, wide)[:, margin : margin + size, margin : margin + size].reshape(N, size * size)


def _take(x, offset, size, dim):
    """y[..., i] = x[..., i + offset] along `dim` (-1 or -2) for i in [0, size); `fill` outside x."""
    before, after = max(-offset, 0), max(size + offset - x.shape[dim], 0)
    return _pad(x, before, after, dim).narrow(dim, offset + before, size)


def _pad(x, before, after, dim):
    """x padded along `dim` (-1 or -2) with its dtype's largest value (+inf for floats): neutral for a min."""
    fill = math.inf if x.is_floating_point() else torch.iinfo(x.dtype).max
    return torch.nn.functional.pad(x, (before, after) if dim == -1 else (0, 0, before, after), value=fill)


def _window_min(x, size, dim):
    """y[..., i] = min(x[..., i : i + size]) along `dim`: minima of runs of 1, 2, 4, ... elements, then two
    overlapping runs cover the window; log2(size) vectorised passes (a pooling kernel costs `size` per element).
    Exact for floats and integers alike."""
    run, y = 1, x
    while 2 * run <= size:
        m = y.shape[dim] - run
        y = torch.minimum(y.narrow(dim, 0, m), y.narrow(dim, run, m))  # y[i] = min(x[i : i + 2 run])
        run *= 2
    m = x.shape[dim] - size + 1
    return torch.minimum(y.narrow(dim, 0, m), y.narrow(dim, size - run, m))


def _fill_holes(zbuf, size, reach):
    """Let a surface seen through a gap in a nearer one (or empty pixels inside it) take the nearest key nearby.

    Splatted random points leave gaps through which farther surfaces show. A pixel is such a gap when a nearer
    surface (by more than _HOLE_TOL of its depth) closes it in on both sides along one axis within `reach`
    pixels and along the other within 2 * reach (cracks are long and narrow). Requiring all four sides keeps
    silhouettes, occluding edges and real openings (wider or longer than that) as they are. A gap takes the
    smallest key of the (2 reach + 1)^2 window around it: its nearest point (ties: the lowest point index).
    """
    depth = torch.where(zbuf != _EMPTY, (zbuf >> 32).to(torch.int32).view(torch.float32), math.inf)
    depth = depth.view(-1, size, size)
    limit = depth * (1 - _HOLE_TOL)
    # Minimum depth within `reach` pixels strictly left of, right of, above and below each pixel ...
    row = _window_min(_pad(depth, reach, reach, -1), reach, -1)  # row[x] = min(depth[x - reach : x])
    col = _window_min(_pad(depth, reach, reach, -2), reach, -2)
    left, right = row.narrow(-1, 0, size), row.narrow(-1, reach + 1, size)
    up, down = col.narrow(-2, 0, size), col.narrow(-2, reach + 1, size)
    # ... and within 2 * reach: that window or the next one out.
    far_left, far_right = left.minimum(_take(left, -reach, size, -1)), right.minimum(_take(right, reach, size, -1))
    far_up, far_down = up.minimum(_take(up, -reach, size, -2)), down.minimum(_take(down, reach, size, -2))
    hole = ((left < limit) & (right < limit) & (far_up < limit) & (far_down < limit)) | (
        (up < limit) & (down < limit) & (far_left < limit) & (far_right < limit)
    )
    keys = zbuf.view(-1, size, size)
    return torch.where(hole, _nearest_keys(keys, reach), keys).view_as(zbuf)


def _nearest_keys(keys, reach):
    """The smallest key (the nearest point; ties: the lowest index) of the (2 reach + 1)^2 window around every
    pixel of keys (N, S, S)."""
    k = 2 * reach + 1
    return _window_min(_pad(_window_min(_pad(keys, reach, reach, -1), k, -1), reach, reach, -2), k, -2)


def render_points(points, poses, image_size=224, fov_deg=40.0, point_radius=None, shading="normal"):
    """Render points (B, P, 3) from poses (V, 4, 4) or (B, V, 4, 4) -> RenderOutput.

    shading "normal": camera-space normal map (right -> red, up -> green, towards the camera -> blue) from a
    PCA of each point's nearest neighbours, darkened up to 40% with depth. shading "depth": grey level, the
    view's nearest visible point white, its farthest 0.2. shading "lambert": a grey matte surface lit by one
    light above-left of the camera plus ambient light (the look of a shaded object in a photo). `point_radius`
    is in pixels (default `default_point_radius(image_size, P)`).
    """
    check_choice("shading", shading, SHADINGS)
    check_int("image_size", image_size, 1)
    cam = world_to_camera(points, poses)  # validates shapes
    B, V, P, _ = cam.shape
    if P == 0:
        raise ValueError("points: expected at least one point per cloud, got P = 0")
    S = image_size
    radius = default_point_radius(S, P) if point_radius is None else check_positive("point_radius", point_radius)
    uv, z = to_pixels(cam, S, fov_deg)

    chunk = max(1, _CHUNK // (P * len(_footprint(radius, "cpu")[0])))
    zbuf = torch.cat(
        [_zbuffer(a, b, S, radius) for a, b in zip(uv.flatten(0, 1).split(chunk), z.flatten(0, 1).split(chunk))]
    )
    zbuf = _fill_holes(zbuf, S, min(math.ceil(2 * radius), S))
    mask = zbuf != _EMPTY  # (B*V, S*S)
    depth = torch.where(mask, (zbuf >> 32).to(torch.int32).view(torch.float32), 0.0)
    lo = torch.where(mask, depth, math.inf).amin(1, keepdim=True)
    hi = torch.where(mask, depth, -math.inf).amax(1, keepdim=True)
    far = ((depth - lo) / (hi - lo).clamp_min(1e-6)).unsqueeze(-1)  # 0 nearest .. 1 farthest visible

    if shading in ("normal", "lambert"):
        rot = poses.to(device=cam.device, dtype=torch.float32)[..., :3, :3]
        n_cam = estimate_normals(points.float()).unsqueeze(1) @ rot.expand(B, V, 3, 3)  # R^T n per view
        n_cam = n_cam * -torch.sign((n_cam * cam).sum(-1, keepdim=True) + 1e-12)  # face the camera (origin)
        if shading == "normal":
            colors = (0.5 + 0.5 * n_cam * n_cam.new_tensor([1.0, -1.0, -1.0])).reshape(-1, 3)
        else:
            light = torch.nn.functional.normalize(n_cam.new_tensor(_LIGHT), dim=0)
            grey = _AMBIENT + (1 - _AMBIENT) * (n_cam @ light).clamp_min(0)
            colors = grey.reshape(-1, 1).expand(-1, 3)
        winner = torch.arange(B * V, device=cam.device).unsqueeze(1) * P + torch.where(mask, zbuf & 0xFFFFFFFF, 0)
        rgb = colors[winner] * (1 - 0.4 * far) if shading == "normal" else colors[winner]
    else:
        rgb = (1 - 0.8 * far).expand(-1, -1, 3)
    rgb = torch.where(mask.unsqueeze(-1), rgb, 0.0).clamp(0, 1)

    image = rgb.view(B, V, S, S, 3).permute(0, 1, 4, 2, 3).contiguous()
    return RenderOutput(image, mask.view(B, V, 1, S, S), depth.view(B, V, 1, S, S))
