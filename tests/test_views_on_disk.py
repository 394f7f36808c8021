"""ViewsOnDisk: layout, decoding (PIL and DALI's CPU pipeline agree), poses, errors; PNG fixtures written here."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from crossjepa.data.views_on_disk import ViewsOnDisk, orbit_poses, view_path

AZIMUTHS = (0, 90, 180, 270)
SIZE = 20

try:
    import nvidia.dali  # noqa: F401

    HAVE_DALI = True
except ImportError:
    HAVE_DALI = False
needs_dali = pytest.mark.skipif(not HAVE_DALI, reason="NVIDIA DALI not installed")


def smooth_image(rng, mode):
    """A random smooth image (resizing filters then differ by at most a level) in PIL mode `mode`."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    freq, phase = rng.uniform(0.5, 2, (2, 4))
    channels = [127.5 + 127 * np.sin(2 * np.pi * (freq[0] * x + freq[1] * y) * k + phase[k]) for k in range(4)]
    array = np.stack(channels, -1).astype(np.uint8)
    return Image.fromarray(array, "RGBA").convert(mode)


@pytest.fixture
def views_root(tmp_path):
    """3 objects x 4 azimuths: RGB, RGBA (alpha dropped) and grey (expanded) PNGs."""
    rng = np.random.default_rng(0)
    pixels = {}
    for name, mode in (("chair_1", "RGB"), ("lamp_2", "RGBA"), ("sofa_3", "L")):
        for az in AZIMUTHS:
            path = view_path(tmp_path, name, az)
            path.parent.mkdir(exist_ok=True)
            image = smooth_image(rng, mode)
            image.save(path)
            pixels[name, az] = np.array(image.convert("RGB"))
    return tmp_path, pixels


def test_reads_the_layout_at_stored_size(views_root):
    root, pixels = views_root
    views = ViewsOnDisk(root, image_size=SIZE, backend="pil")
    assert views.names == ["chair_1", "lamp_2", "sofa_3"] and views.azimuths == list(AZIMUTHS)
    images, poses = views(torch.tensor([2, 0]))
    assert images.shape == (2, 4, 3, SIZE, SIZE) and images.dtype == torch.float32
    assert poses.shape == (2, 4, 4, 4) and poses.dtype == torch.float32
    for n, name in enumerate(("sofa_3", "chair_1")):
        for v, az in enumerate(AZIMUTHS):
            expected = torch.from_numpy(pixels[name, az]).permute(2, 0, 1).float() / 255
            assert torch.equal(images[n, v], expected)
    assert torch.equal(poses[0], poses[1])


def test_is_a_view_source_for_the_cache(views_root):
    from crossjepa.teacher.views import describe_view_source, read_view_batch

    class Named:
        names = ["lamp_2", "chair_1"]

    root, pixels = views_root
    views = ViewsOnDisk(root, Named(), image_size=SIZE, backend="pil")
    images, poses, masks = read_view_batch(views, [1, 0], views.num_views)
    assert images.shape == (2, 4, 3, SIZE, SIZE) and masks.shape == (2, 4, 1, SIZE, SIZE)
    assert torch.equal(images[0, 2], torch.from_numpy(pixels["chair_1", 180]).permute(2, 0, 1).float() / 255)
    settings = describe_view_source(views)
    assert settings["azimuths_deg"] == list(AZIMUTHS) and settings["image_size"] == SIZE
    json.dumps(settings)


def test_poses_follow_the_renderer_convention(views_root):
    from crossjepa.render.cameras import project

    root, _ = views_root
    json_path = root / "views.json"
    json_path.write_text(json.dumps({"elevation_deg": 30.0, "radius": 2.5}))
    views = ViewsOnDisk(root, backend="pil", azimuths=[90, 0])
    poses = views.poses
    el = math.radians(30.0)
    torch.testing.assert_close(poses[0, :3, 3], 2.5 * torch.tensor([math.cos(el), math.sin(el), 0.0]))
    torch.testing.assert_close(poses[1, :3, 3], 2.5 * torch.tensor([0.0, math.sin(el), math.cos(el)]))
    rot = poses[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6, rtol=0)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(2))
    assert (poses[:, 1, 1] < 0).all()  # image y points down, world y up
    uv, z = project(torch.zeros(1, 1, 3), poses, image_size=64)  # the origin is at the image centre
    torch.testing.assert_close(uv, torch.full_like(uv, 32.0))
    torch.testing.assert_close(z, torch.full_like(z, 2.5))
    assert ViewsOnDisk(root, backend="pil", elevation_deg=0.0).elevation_deg == 0.0  # arguments win
    torch.testing.assert_close(orbit_poses([90], 30.0, 2.5)[0], poses[0])


@needs_dali
@pytest.mark.parametrize("size", [SIZE, 13, 32])
def test_dali_cpu_pipeline_matches_pil(views_root, size):
    root, _ = views_root
    pil = ViewsOnDisk(root, image_size=size, backend="pil")
    dali = ViewsOnDisk(root, image_size=size, backend="dali", device="cpu", batch_size=5)
    a, pa = pil([0, 1, 2])
    b, pb = dali([0, 1, 2])
    assert b.shape == a.shape and b.dtype == a.dtype and torch.equal(pa, pb)
    diff = (a - b).abs()
    # Inside, the filters agree up to rounding; on the border PIL renormalises the filter and DALI clamps.
    assert diff[..., 1:-1, 1:-1].max() <= 1 / 255 + 1e-6 and diff.mean() < 2 / 255
    if size == SIZE:
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_flat_layout_suffix_and_chosen_azimuths(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("02691156-1a04", "02691156-1a32"):
        for az in (0, 12, 24):
            smooth_image(rng, "L").save(view_path(tmp_path, name, az, "_depth0001", flat=True))
    views = ViewsOnDisk(tmp_path, ["02691156-1a32", "02691156-1a04"], suffix="_depth0001", image_size=8, backend="pil")
    assert views.flat and views.azimuths == [0, 12, 24] and len(views) == 2
    images, poses = ViewsOnDisk(
        tmp_path, ["02691156-1a04"], suffix="_depth0001", azimuths=[24], image_size=8, backend="pil"
    )([0])
    assert images.shape == (1, 1, 3, 8, 8) and torch.equal(images[0, 0], views([1])[0][0, 2])
    assert (images[:, :, 0] == images[:, :, 2]).all()  # grey expanded to RGB


@pytest.mark.parametrize("backend", ["pil", pytest.param("dali", marks=needs_dali)])
def test_errors_name_the_file(views_root, backend):
    root, _ = views_root
    views = ViewsOnDisk(root, image_size=SIZE, backend=backend, device="cpu")
    bad = view_path(root, "lamp_2", 90)
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=f"corrupt file {bad}: not a PNG file"):
        views([1])
    good = view_path(root, "chair_1", 180)
    truncated = view_path(root, "sofa_3", 0)
    truncated.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match=f"corrupt file {truncated}"):
        views([2])
    missing = view_path(root, "chair_1", 270)
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=f"view not found: {missing}"):
        views([0])
    with pytest.raises(IndexError, match="object_indices: 3 out of range for 3 objects"):
        views([3])


def test_bad_arguments(views_root):
    root, _ = views_root
    with pytest.raises(ValueError, match="backend: expected one of auto, pil, dali"):
        ViewsOnDisk(root, backend="cv2")
    with pytest.raises(ValueError, match="azimuths: expected distinct whole degrees"):
        ViewsOnDisk(root, azimuths=[0, 360])
    with pytest.raises(ValueError, match="no views found: looked for chair_1_r_000_depth0001.png"):
        ViewsOnDisk(root, suffix="_depth0001")
    with pytest.raises(FileNotFoundError, match="root: no such directory"):
        ViewsOnDisk(root / "nowhere")
    (root / "views.json").write_text(json.dumps({"fov": 40}))
    with pytest.raises(ValueError, match="views.json: expected an object with keys"):
        ViewsOnDisk(root)
