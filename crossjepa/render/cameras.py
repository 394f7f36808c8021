"""Camera poses and pinhole projection.

Poses are camera-to-world 4x4 matrices in the OpenCV convention: camera x right, y down, z forward (the camera
looks along its +z). The world is y-up. Pixel coordinates are continuous: pixel (row i, column j) covers
[j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5) and the optical axis hits (W/2, H/2).
"""

import math

import torch

from ..validate import check_int, check_number, check_positive

WORLD_UP = (0.0, 1.0, 0.0)
# Camera distance for unit-sphere objects: at 3.2 the whole sphere subtends asin(1 / 3.2) = 18.2 degrees off
# axis, inside the default 40 degree field of view (20 degrees each side), so no object is ever cropped.
DEFAULT_RADIUS = 3.2


def look_at(eye, target=(0.0, 0.0, 0.0), up=WORLD_UP):
    """Camera-to-world poses (..., 4, 4) for cameras at `eye` (..., 3) looking at `target`, image-up along `up`."""
    eye = torch.as_tensor(eye, dtype=torch.float32)
    if eye.shape[-1:] != (3,):
        raise ValueError(f"eye: expected shape (..., 3), got {tuple(eye.shape)}")
    target = torch.as_tensor(target, dtype=eye.dtype, device=eye.device).expand_as(eye)
    up = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    x = torch.linalg.cross(z, up)
    # Looking straight along `up` leaves x undefined: fall back to another up so the pose stays a rotation.
    alt = torch.linalg.cross(z, torch.roll(up, 1, dims=-1))
    x = torch.where(x.norm(dim=-1, keepdim=True) < 1e-6, alt, x)
    x = torch.nn.functional.normalize(x, dim=-1)
    y = torch.linalg.cross(z, x)  # image-down, i.e. opposite to `up`
    pose = torch.zeros(eye.shape[:-1] + (4, 4), dtype=eye.dtype, device=eye.device)
    pose[..., :3, 0], pose[..., :3, 1], pose[..., :3, 2], pose[..., :3, 3] = x, y, z, eye
    pose[..., 3, 3] = 1.0
    return pose


def _eyes(azimuth, elevation, radius):
    """Points on a sphere of `radius`: azimuth about the world up (y) axis, elevation above the xz plane."""
    return radius * torch.stack(
        (elevation.cos() * azimuth.sin(), elevation.sin(), elevation.cos() * azimuth.cos()), dim=-1
    )


def _check_sphere(num_views, radius) -> None:
    check_int("num_views", num_views, 1)
    check_positive("radius", radius)


def sphere_poses(num_views, radius=DEFAULT_RADIUS, elevations_deg=(-20.0, 30.0), azimuth_offset_deg=0.0):
    """Deterministic cameras (V, 4, 4) looking at the origin.

    View i sits at azimuth offset + 360 * i / V and cycles through `elevations_deg`, so every view has its own
    azimuth and consecutive views alternate between the rings.
    """
    _check_sphere(num_views, radius)
    if len(elevations_deg) == 0:
        raise ValueError("elevations_deg: expected at least one elevation")
    i = torch.arange(num_views, dtype=torch.float64)
    azimuth = torch.deg2rad(azimuth_offset_deg + 360.0 * i / num_views)
    elevation = torch.deg2rad(torch.tensor(elevations_deg, dtype=torch.float64)[i.long() % len(elevations_deg)])
    return look_at(_eyes(azimuth, elevation, radius).float())


def random_poses(num_views, generator=None, radius=DEFAULT_RADIUS):
    """Cameras (V, 4, 4) at directions uniform on the sphere of `radius`, looking at the origin."""
    _check_sphere(num_views, radius)
    u = torch.rand(num_views, 2, generator=generator, dtype=torch.float64)
    azimuth = 2 * math.pi * u[:, 0]
    elevation = torch.asin(2 * u[:, 1] - 1)  # uniform in sin(elevation) = uniform area on the sphere
    return look_at(_eyes(azimuth, elevation, radius).float())


def focal_length(image_size, fov_deg):
    """Focal length in pixels for a square image whose full horizontal field of view is `fov_deg`."""
    check_number("fov_deg", fov_deg, 0, 180, lo_open=True, hi_open=True)
    return 0.5 * image_size / math.tan(math.radians(fov_deg) / 2)


def world_to_camera(points, poses):
    """Points (B, P, 3) in the frames of poses (V, 4, 4) or (B, V, 4, 4) -> (B, V, P, 3)."""
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points: expected shape (B, P, 3), got {tuple(points.shape)}")
    if poses.dim() not in (3, 4) or poses.shape[-2:] != (4, 4):
        raise ValueError(f"poses: expected shape (V, 4, 4) or (B, V, 4, 4), got {tuple(poses.shape)}")
    if poses.dim() == 4 and poses.shape[0] != points.shape[0]:
        raise ValueError(f"poses: batch {poses.shape[0]} does not match points batch {points.shape[0]}")
    poses = poses.to(device=points.device, dtype=torch.float32)
    if poses.dim() == 3:
        poses = poses.unsqueeze(0).expand(points.shape[0], -1, -1, -1)
    rot, eye = poses[..., :3, :3], poses[..., :3, 3]
    # p_cam = R^T (p - eye), written for row vectors as (p - eye) @ R.
    return (points.float().unsqueeze(1) - eye.unsqueeze(2)) @ rot


def to_pixels(cam, image_size, fov_deg):
    """Camera-frame points (..., 3) -> (uv (..., 2) pixel coordinates, z (...) depth)."""
    f = focal_length(image_size, fov_deg)
    z = cam[..., 2]
    # Points at or behind the camera get a finite uv; callers mask them with z.
    safe_z = torch.where(z > 1e-6, z, torch.ones_like(z))
    return cam[..., :2] * (f / safe_z).unsqueeze(-1) + 0.5 * image_size, z


def project(points, poses, image_size=224, fov_deg=40.0):
    """Pinhole projection -> (uv (B, V, P, 2) pixel coordinates, x right / y down; z (B, V, P) depth)."""
    return to_pixels(world_to_camera(points, poses), image_size, fov_deg)
