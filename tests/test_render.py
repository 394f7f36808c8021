"""Renderer geometry, z-buffer, batching, colour histograms and the view grid."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from crossjepa.render import (
    color_histogram,
    estimate_normals,
    look_at,
    project,
    random_poses,
    render_points,
    save_view_grid,
    sphere_poses,
)
from crossjepa.render.cameras import focal_length
from crossjepa.render.splat import default_point_radius


def _cloud(gen, batch=2, num_points=1500):
    """Noisy ellipsoid surfaces with random centres: clouds whose renders have real surfaces and normals."""
    p = torch.randn(batch, num_points, 3, generator=gen)
    p = p / p.norm(dim=-1, keepdim=True) * (0.4 + 0.5 * torch.rand(batch, 1, 3, generator=gen))
    return p + 0.1 * (torch.rand(batch, 1, 3, generator=gen) - 0.5)


def _is_rotation(r):
    eye = torch.eye(3).expand_as(r)
    return torch.allclose(r.transpose(-1, -2) @ r, eye, atol=1e-5) and torch.allclose(
        torch.linalg.det(r), torch.ones(r.shape[:-2]), atol=1e-5
    )


def test_sphere_poses_look_at_origin_from_the_radius():
    radius = 2.0 + torch.rand(()).item()
    poses = sphere_poses(7, radius=radius, elevations_deg=(-25.0, 10.0, 40.0), azimuth_offset_deg=13.0)
    assert poses.shape == (7, 4, 4) and poses.dtype == torch.float32
    assert _is_rotation(poses[:, :3, :3])
    eye = poses[:, :3, 3]
    assert torch.allclose(eye.norm(dim=-1), torch.full((7,), radius), atol=1e-5)
    assert torch.allclose(poses[:, :3, 2], -eye / radius, atol=1e-5)  # camera z points at the origin
    assert (poses[:, 1, 1] < 0).all()  # camera y (image down) points against world up (+y)
    elevation = torch.rad2deg(torch.asin(eye[:, 1] / radius))
    assert torch.allclose(elevation, torch.tensor([-25.0, 10.0, 40.0] * 3)[:7], atol=1e-3)
    assert torch.equal(
        poses, sphere_poses(7, radius=radius, elevations_deg=(-25.0, 10.0, 40.0), azimuth_offset_deg=13.0)
    )


def test_random_poses_are_seeded_rotations_on_the_sphere():
    a = random_poses(16, torch.Generator().manual_seed(3), radius=2.5)
    b = random_poses(16, torch.Generator().manual_seed(3), radius=2.5)
    assert torch.equal(a, b) and _is_rotation(a[:, :3, :3])
    assert torch.allclose(a[:, :3, 3].norm(dim=-1), torch.full((16,), 2.5), atol=1e-5)
    # Straight down the up axis is degenerate for look-at: it must still give a rotation.
    assert _is_rotation(look_at(torch.tensor([[0.0, 3.0, 0.0], [0.0, -2.0, 0.0]]))[:, :3, :3])


def test_known_point_lands_on_expected_pixel():
    # Camera on the -z axis looking at the origin, world y up: world +x appears on the LEFT (x_cam = -x),
    # world +y appears ABOVE the centre (y_cam = -y), depth = 3 + z.
    size, fov = 64, 50.0
    pose = look_at(torch.tensor([0.0, 0.0, -3.0]))[None]
    x, y, z = (torch.tensor([0.2, 0.1, 0.0]) + torch.rand(3) * torch.tensor([0.3, 0.3, 0.5])).tolist()
    f = focal_length(size, fov)
    u, v = size / 2 - f * x / (3 + z), size / 2 - f * y / (3 + z)
    point = torch.tensor([[[x, y, z]]])
    uv, depth = project(point, pose, image_size=size, fov_deg=fov)
    assert torch.allclose(uv[0, 0, 0], torch.tensor([u, v]), atol=1e-4)
    assert math.isclose(depth[0, 0, 0].item(), 3 + z, rel_tol=1e-6)
    out = render_points(point, pose, image_size=size, fov_deg=fov, point_radius=1.0, shading="depth")
    row, col = int(v), int(u)
    assert u < size / 2 and v < size / 2
    assert out.mask[0, 0, 0, row, col] and math.isclose(out.depth[0, 0, 0, row, col].item(), 3 + z, rel_tol=1e-6)
    assert out.image[0, 0, :, row, col].tolist() == [1.0, 1.0, 1.0]  # the only point is the nearest: white


def test_origin_projects_to_the_image_centre():
    poses = random_poses(5, torch.Generator().manual_seed(1))
    uv, _ = project(torch.zeros(1, 1, 3) + 1e-9, poses, image_size=100)
    assert torch.allclose(uv[0, :, 0], torch.full((5, 2), 50.0), atol=1e-3)


def test_mask_covers_exactly_the_projected_footprint():
    gen = torch.Generator().manual_seed(5)
    size, radius = 48, 1.5 + 2.5 * torch.rand((), generator=gen).item()
    pose = torch.eye(4)[None]
    point = torch.cat([torch.rand(1, 1, 2, generator=gen) - 0.5, 2 + torch.rand(1, 1, 1, generator=gen)], -1)
    u, v = project(point, pose, image_size=size)[0][0, 0, 0].tolist()
    out = render_points(point, pose, image_size=size, point_radius=radius)
    rows, cols = np.mgrid[0:size, 0:size]
    expected = (cols + 0.5 - u) ** 2 + (rows + 0.5 - v) ** 2 <= radius**2
    assert np.array_equal(out.mask[0, 0, 0].numpy(), expected)
    assert (out.depth[0, 0, 0][~torch.from_numpy(expected)] == 0).all()
    assert (out.image[0, 0][:, ~torch.from_numpy(expected)] == 0).all()


@pytest.mark.parametrize("near_first", [True, False])
def test_zbuffer_picks_the_nearer_point(near_first):
    gen = torch.Generator().manual_seed(7)
    ray = torch.cat([torch.rand(2, generator=gen) - 0.5, torch.ones(1)])
    near, far = 1.5 + torch.rand((), generator=gen).item(), 3.0 + torch.rand((), generator=gen).item()
    pts = torch.stack([ray * near, ray * far] if near_first else [ray * far, ray * near])[None]
    out = render_points(pts, torch.eye(4)[None], image_size=40, point_radius=2.0, shading="depth")
    drawn = out.depth[out.mask]
    assert drawn.numel() > 0 and torch.allclose(drawn, torch.full_like(drawn, near * ray[2].item()))


def test_batched_render_equals_per_object_per_view_renders():
    gen = torch.Generator().manual_seed(11)
    pts = _cloud(gen)
    poses = torch.stack([random_poses(3, gen), random_poses(3, gen)])  # (B, V, 4, 4)
    out = render_points(pts, poses, image_size=56)
    assert out.image.shape == (2, 3, 3, 56, 56) and out.mask.shape == out.depth.shape == (2, 3, 1, 56, 56)
    for b in range(2):
        for v in range(3):
            one = render_points(pts[b : b + 1], poses[b, v : v + 1], image_size=56)
            assert torch.equal(one.mask[0, 0], out.mask[b, v])
            assert torch.equal(one.depth[0, 0], out.depth[b, v])
            assert torch.allclose(one.image[0, 0], out.image[b, v], atol=1e-5)
    shared = render_points(pts, poses[0], image_size=56)  # (V, 4, 4) poses are shared by every object
    assert torch.equal(shared.mask, render_points(pts, poses[0].expand(2, -1, -1, -1), image_size=56).mask)


def _closed_in(covered, reach):
    """Pixels with a covered pixel within `reach` on both sides along their row, or along their column."""
    padded = torch.nn.functional.pad(covered, (reach, reach, reach, reach))
    size = covered.shape[0]

    def side(dy, dx):  # a covered pixel at one of the offsets k * (dy, dx), k = 1..reach
        return torch.stack(
            [
                padded[reach + k * dy : reach + k * dy + size, reach + k * dx : reach + k * dx + size]
                for k in range(1, reach + 1)
            ]
        ).any(0)

    return (side(0, -1) & side(0, 1)) | (side(-1, 0) & side(1, 0))


def _assert_mask_is_the_splatted_points(points, poses, mask, size):
    """Foreground = the pixels whose centre lies within the splat radius of a projected point, plus gaps that
    hole filling closes (enclosed by such pixels along a row or a column)."""
    radius = default_point_radius(size, points.shape[1])
    uv, z = project(points, poses, image_size=size)
    assert (z > 0).all() and ((uv >= 0) & (uv < size)).all()  # the whole cloud is in view
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    centres = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).view(-1, 2)  # (x, y) per pixel
    for b in range(points.shape[0]):
        for v in range(poses.shape[0]):
            nearest = torch.cdist(centres, uv[b, v]).amin(1).view(size, size)
            covered, drawn = nearest <= radius + 1e-3, mask[b, v, 0]
            assert drawn[nearest <= radius - 1e-3].all(), (b, v)
            assert _closed_in(covered, math.ceil(2 * radius))[drawn & ~covered].all(), (b, v)


def test_outputs_are_well_formed_and_show_surface_shading():
    gen = torch.Generator().manual_seed(13)
    pts = _cloud(gen)
    for shading in ("normal", "depth", "lambert"):
        out = render_points(pts, sphere_poses(4), image_size=64, shading=shading)
        img, mask = out.image, out.mask
        assert img.dtype == torch.float32 and img.min() >= 0 and img.max() <= 1
        assert (img * ~mask == 0).all() and (out.depth * ~mask == 0).all() and (out.depth[mask] > 0).all()
        _assert_mask_is_the_splatted_points(pts, sphere_poses(4), mask, 64)
        # Shading, not a flat silhouette: foreground pixels take many different values.
        assert img.permute(0, 1, 3, 4, 2)[mask.squeeze(2)].unique(dim=0).shape[0] > 50


def test_rotating_points_and_cameras_together_leaves_the_render_unchanged():
    gen = torch.Generator().manual_seed(17)
    pts, poses = _cloud(gen, batch=1), sphere_poses(3)
    rot = torch.linalg.qr(torch.randn(3, 3, generator=gen)).Q
    rot = rot * torch.linalg.det(rot)  # a proper rotation
    r4 = torch.eye(4)
    r4[:3, :3] = rot
    a = render_points(pts, poses, image_size=64)
    b = render_points(pts @ rot.T, r4 @ poses, image_size=64)
    assert (a.mask != b.mask).float().mean() < 0.005
    same = (a.mask & b.mask).squeeze(2)
    assert (a.image - b.image).abs().amax(2)[same].median() < 1e-3


def test_normals_of_a_plane_and_of_coincident_points():
    gen = torch.Generator().manual_seed(31)
    rot = torch.linalg.qr(torch.randn(3, 3, generator=gen)).Q
    plane = torch.cat([torch.rand(1, 400, 2, generator=gen) - 0.5, torch.zeros(1, 400, 1)], -1) @ rot.T
    normals = estimate_normals(plane)
    assert (normals @ rot[:, 2]).abs().min() > 1 - 1e-5  # +- the plane's normal at every point
    # Coincident points (a zero covariance) get a defined unit vector, and the render stays finite.
    same = torch.rand(1, 1, 3, generator=gen).expand(-1, 50, -1).contiguous()
    assert torch.equal(estimate_normals(same), torch.tensor([0.0, 0.0, 1.0]).expand(1, 50, 3))
    assert torch.isfinite(render_points(same, sphere_poses(2), image_size=32).image).all()


def test_bad_inputs_raise_value_error():
    pts, poses = torch.rand(1, 10, 3), sphere_poses(2)
    with pytest.raises(ValueError, match="shading"):
        render_points(pts, poses, shading="phong")
    with pytest.raises(ValueError, match="points"):
        render_points(torch.rand(10, 3), poses)
    with pytest.raises(ValueError, match="poses"):
        render_points(pts, torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="poses"):
        render_points(pts, torch.rand(3, 2, 4, 4))
    with pytest.raises(ValueError, match="num_views"):
        sphere_poses(0)


def test_histogram_sums_to_one_per_channel_and_matches_numpy():
    gen = torch.Generator().manual_seed(19)
    image, mask = torch.rand(2, 3, 3, 20, 24, generator=gen), torch.rand(2, 3, 1, 20, 24, generator=gen) > 0.4
    hist = color_histogram(image, mask, bins=6)
    assert hist.shape == (2, 3, 18)
    assert torch.allclose(hist.view(2, 3, 3, 6).sum(-1), torch.ones(2, 3, 3))
    for c in range(3):
        values = image[1, 2, c][mask[1, 2, 0]].numpy()
        expected = np.histogram(values, bins=6, range=(0, 1))[0] / values.size
        assert np.allclose(hist[1, 2, 6 * c : 6 * (c + 1)].numpy(), expected, atol=1e-6)


def test_histogram_of_an_empty_mask_is_uniform_not_nan():
    image = torch.rand(4, 3, 16, 16)
    mask = torch.zeros(4, 1, 16, 16, dtype=torch.bool)
    mask[1, 0, 3, 5] = True
    hist = color_histogram(image, mask)
    assert torch.isfinite(hist).all()
    assert torch.allclose(hist[[0, 2, 3]], torch.full((3, 24), 1 / 8))
    assert torch.allclose(hist[1].view(3, 8).sum(-1), torch.ones(3))
    with pytest.raises(ValueError, match="mask"):
        color_histogram(image, mask[:, :, :8])


def test_render_histograms_come_from_the_foreground():
    out = render_points(_cloud(torch.Generator().manual_seed(23), batch=1), sphere_poses(2), image_size=48)
    hist = color_histogram(out.image, out.mask).view(1, 2, 3, 8)
    assert torch.allclose(hist.sum(-1), torch.ones(1, 2, 3))
    assert hist.amax() < 0.9  # a normal map spreads over several bins, unlike a flat silhouette


def test_save_view_grid_writes_a_png_atomically(tmp_path):
    images = torch.rand(2, 3, 3, 20, 30)
    path = save_view_grid(images, tmp_path / "sub" / "grid.png", titles=["a", "b"])
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] == 3 * 30 + 2 * 2 and im.size[1] > 2 * 20
    assert sorted(p.name for p in path.parent.iterdir()) == ["grid.png"]
    save_view_grid(images, path)  # overwrite in place
    with pytest.raises(ValueError, match="titles"):
        save_view_grid(images, tmp_path / "x.png", titles=["only one"])
    with pytest.raises(ValueError, match="images"):
        save_view_grid(images[0], tmp_path / "x.png")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_render_matches_cpu():
    pts, poses = _cloud(torch.Generator().manual_seed(29)), sphere_poses(3)
    cpu = render_points(pts, poses, image_size=64)
    gpu = render_points(pts.cuda(), poses.cuda(), image_size=64)
    assert (cpu.mask != gpu.mask.cpu()).float().mean() < 0.001
    assert torch.allclose(cpu.depth, gpu.depth.cpu(), atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_window_min_equals_the_naive_minimum(dtype):
    from crossjepa.render.splat import _window_min

    gen = torch.Generator().manual_seed(3)
    x = torch.randint(-1000, 1000, (3, 5, 23), generator=gen).to(dtype)
    for dim in (-1, -2):
        n = x.shape[dim]
        for size in range(1, n + 1):
            want = torch.stack([x.narrow(dim, i, size).amin(dim) for i in range(n - size + 1)], dim)
            assert torch.equal(_window_min(x, size, dim), want), (dim, size)


@pytest.mark.parametrize("size,num_points", [(64, 300), (128, 2000), (224, 1024)])
def test_hole_filling_matches_the_pooled_reference(size, num_points, monkeypatch):
    from crossjepa.perf.references import previous_renderer
    from crossjepa.render import splat

    gen = torch.Generator().manual_seed(size)
    pts, poses = _cloud(gen, batch=2, num_points=num_points), random_poses(3, gen)
    out = render_points(pts, poses, image_size=size)
    with previous_renderer():
        assert splat._nearest_keys.__module__ == splat._window_min.__module__ == "crossjepa.perf.references"
        ref = render_points(pts, poses, image_size=size)
    assert torch.equal(out.mask, ref.mask) and torch.equal(out.depth, ref.depth) and torch.equal(out.image, ref.image)
    monkeypatch.setattr(splat, "_fill_holes", lambda zbuf, size, reach: zbuf)
    unfilled = render_points(pts, poses, image_size=size)
    assert (unfilled.depth != out.depth).sum() > 20  # there were gaps to fill


def test_lambert_shading_is_grey_and_follows_the_light():
    g = torch.linspace(-0.5, 0.5, 40)
    x, y = torch.meshgrid(g, g, indexing="ij")
    plane = torch.stack([x.flatten(), y.flatten(), torch.full((1600,), 3.0)], -1)  # faces the camera
    tilted = plane.clone()
    tilted[:, 2] = 3.0 + 0.8 * plane[:, 0]  # turned away from a light on the camera's left
    out = render_points(torch.stack([plane, tilted]), torch.eye(4)[None], image_size=48, shading="lambert")
    img, mask = out.image[:, 0], out.mask[:, 0, 0]
    assert torch.equal(img[:, 0], img[:, 1]) and torch.equal(img[:, 0], img[:, 2])  # grey
    light = torch.nn.functional.normalize(torch.tensor([-0.4, -0.6, -0.7]), dim=0)
    facing = 0.15 + 0.85 * float(light @ torch.tensor([0.0, 0.0, -1.0]))
    assert torch.allclose(img[0, 0][mask[0]], torch.tensor(facing), atol=1e-4)
    assert img[1, 0][mask[1]].mean() < facing - 0.1
