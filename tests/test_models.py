"""crossjepa.models: presets and parameter budgets, shapes, encoder-once-per-object, gradients, loss."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from crossjepa.models import PRESETS, CrossJEPA, build, count_parameters, crossjepa_loss, describe
from crossjepa.models.config import ModelConfig, preset_config
from crossjepa.ops import ReferenceFallbackWarning

BINS = 8


@pytest.fixture(autouse=True)
def _quiet_reference_ops():
    # Without the compiled extension the ops warn once that they use the torch reference; irrelevant here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReferenceFallbackWarning)
        yield


def random_rotation(gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def look_at_poses(batch: int, views: int, gen: torch.Generator) -> torch.Tensor:
    """Random camera-to-world poses on a sphere of radius ~2.2, looking at the origin (OpenCV axes)."""
    eye = torch.nn.functional.normalize(torch.randn(batch, views, 3, generator=gen), dim=-1) * 2.2
    z = torch.nn.functional.normalize(-eye, dim=-1)
    x = torch.nn.functional.normalize(torch.cross(z, torch.tensor([0.0, 0.0, 1.0]).expand_as(z), dim=-1), dim=-1)
    y = torch.cross(z, x, dim=-1)
    poses = torch.eye(4).repeat(batch, views, 1, 1)
    poses[..., :3, :3] = torch.stack([x, y, z], dim=-1)
    poses[..., :3, 3] = eye
    return poses


def inputs(batch: int, views: int, points: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    pts = torch.nn.functional.normalize(torch.randn(batch, points, 3, generator=gen), dim=-1)
    pts = pts * torch.rand(batch, points, 1, generator=gen) ** (1 / 3)
    hist = torch.rand(batch, views, 3, BINS, generator=gen)
    hist = (hist / hist.sum(-1, keepdim=True)).reshape(batch, views, 3 * BINS)
    return pts, look_at_poses(batch, views, gen), hist


@pytest.fixture(scope="module")
def tiny() -> CrossJEPA:
    torch.manual_seed(0)
    return build("tiny")


def test_default_preset_matches_published_parameter_budget():
    counts = count_parameters(build("default", teacher_dim=768))
    assert abs(counts["encoder"] / 8.5e6 - 1) <= 0.05, counts
    assert abs(counts["trainable"] / 14.1e6 - 1) <= 0.05, counts
    assert counts["trainable"] == counts["encoder"] + counts["predictor"] + counts["conditioner"]
    assert counts["trainable"] == counts["total"]  # nothing frozen: all of it is pretrained


def test_tiny_preset_is_small(tiny):
    counts = count_parameters(tiny)
    assert counts["trainable"] < 1.5e6
    assert tiny.config.tokenizer.num_points <= 512
    text = describe(tiny)
    assert "encoder" in text and "trainable" in text and f"{counts['trainable'] / 1e6:.3f}M" in text


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError) as err:
        build("huge")
    assert all(name in str(err.value) for name in PRESETS)


def test_overrides_and_full_config():
    model = build("tiny", teacher_dim=32, **{"encoder.depth": 2}, predictor={"conditioning": "both"})
    assert len(model.encoder.blocks) == 2 and model.config.predictor.conditioning == "both"
    assert model.predictor.head.out_features == 32
    again = build(config=model.config)
    assert again.config == model.config
    with pytest.raises(ValueError, match="encoder"):
        build("tiny", **{"encoder.depht": 2})
    with pytest.raises(ValueError, match="heads"):
        preset_config("tiny", encoder={"heads": 5})
    with pytest.raises(ValueError, match="fps_start"):
        preset_config("tiny", **{"tokenizer.fps_start": "middle"})
    with pytest.raises(ValueError, match="config"):
        build(config=ModelConfig(), teacher_dim=16)


def test_config_round_trips_through_config_io():
    from crossjepa.config_io import apply_overrides, from_dict, to_dict

    for preset in PRESETS:
        cfg = preset_config(preset)
        assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    changed = apply_overrides(preset_config("tiny"), ["encoder.depth=2", "predictor.conditioning=adaln"])
    assert changed == preset_config("tiny", **{"encoder.depth": 2, "predictor.conditioning": "adaln"})


def test_shapes(tiny):
    cfg = tiny.config
    b, v = 3, 5
    pts, poses, hist = inputs(b, v, cfg.tokenizer.num_points)
    tiny.eval()
    with torch.no_grad():
        out = tiny(pts, poses, hist)
        tokens = tiny.encoder(pts)
        feats = tiny.encoder.features(pts)
    assert out.shape == (b, v, cfg.teacher_dim) and torch.isfinite(out).all()
    assert tokens.shape == (b, 1 + cfg.tokenizer.num_groups, cfg.encoder.width)
    patches = tokens[:, 1:]
    assert torch.allclose(feats, torch.cat([patches.amax(1), patches.mean(1)], -1))


def test_encoder_runs_once_per_object_and_predictor_batches_views(tiny):
    b, v = 4, 6
    pts, poses, hist = inputs(b, v, tiny.config.tokenizer.num_points, seed=1)
    encoder_batches, block_batches = [], []
    hooks = [
        tiny.encoder.tokenizer.register_forward_hook(lambda m, i, o: encoder_batches.append(i[0].shape[0])),
        tiny.predictor.blocks[0].register_forward_hook(lambda m, i, o: block_batches.append(i[0].shape[0])),
    ]
    try:
        tiny(pts, poses, hist)
    finally:
        for h in hooks:
            h.remove()
    assert encoder_batches == [b]
    assert block_batches == [b * v]


def test_views_of_one_object_differ_and_objects_are_independent(tiny):
    tiny.eval()
    pts, poses, hist = inputs(2, 3, tiny.config.tokenizer.num_points, seed=2)
    with torch.no_grad():
        out = tiny(pts, poses, hist)
        first = tiny(pts[:1], poses[:1], hist[:1])
    assert not torch.allclose(out[0, 0], out[0, 1])  # the condition matters
    assert torch.allclose(out[:1], first, atol=1e-5)  # no leakage between objects of a batch


@pytest.mark.parametrize("conditioning", ["token", "adaln", "both"])
def test_gradients_reach_every_parameter(conditioning):
    torch.manual_seed(0)
    model = build("tiny", teacher_dim=24, predictor={"conditioning": conditioning})
    pts, poses, hist = inputs(3, 2, model.config.tokenizer.num_points, seed=3)
    target = torch.randn(3, 2, 24)
    mean, std = target.mean((0, 1)), target.std((0, 1)) + 0.1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # The adaLN modulation starts at zero, so the conditioner feeding it gets gradient from the second step.
    for _ in range(2):
        optimizer.zero_grad()
        crossjepa_loss(model(pts, poses, hist), target, mean, std).backward()
        optimizer.step()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_rotating_points_and_cameras_together(tiny):
    """The augmentation contract: points @ R.T with cameras R4 @ c2w (2D-3D correspondence kept)."""
    gen = torch.Generator().manual_seed(4)
    pts, poses, hist = inputs(2, 3, tiny.config.tokenizer.num_points, seed=4)
    r = random_rotation(gen)
    r4 = torch.eye(4)
    r4[:3, :3] = r
    tiny.eval()
    with torch.no_grad():
        out = tiny(pts @ r.T, r4 @ poses, hist)
        tokens = tiny.encoder(pts @ r.T)
    assert out.shape == (2, 3, tiny.config.teacher_dim) and torch.isfinite(out).all()
    # FPS/kNN are rotation-equivariant and neighbourhoods only rotate, so the patch set is the rotated one.
    centers, neigh = tiny.encoder.tokenizer.group(pts)
    rcenters, rneigh = tiny.encoder.tokenizer.group(pts @ r.T)
    assert torch.allclose(rcenters, centers @ r.T, atol=1e-5)
    assert torch.allclose(rneigh, neigh @ r.T, atol=1e-5)
    assert torch.isfinite(tokens).all()


def test_random_fps_start_follows_the_generator():
    model = build("tiny", **{"tokenizer.fps_start": "random"}).eval()
    pts, _, _ = inputs(2, 1, model.config.tokenizer.num_points, seed=5)
    with torch.no_grad():
        a = model.encoder.features(pts, torch.Generator().manual_seed(7))
        b = model.encoder.features(pts, torch.Generator().manual_seed(7))
        c = model.encoder.features(pts, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_bad_inputs_name_the_argument(tiny):
    pts, poses, hist = inputs(2, 3, tiny.config.tokenizer.num_points, seed=6)
    with pytest.raises(ValueError, match="points"):
        tiny(pts[..., :2], poses, hist)
    with pytest.raises(ValueError, match="points"):
        tiny(pts[:, :8], poses, hist)
    with pytest.raises(ValueError, match="histograms"):
        tiny(pts, poses, hist[..., :-1])
    with pytest.raises(ValueError, match="poses"):
        tiny(pts, poses[:1], hist[:1])


def test_loss_kinds():
    gen = torch.Generator().manual_seed(9)
    d = 16
    mean, std = torch.randn(d, generator=gen), torch.rand(d, generator=gen) + 0.5
    target = (torch.randn(4, 3, d, generator=gen) * std + mean).half()
    standardised = (target.float() - mean) / std
    pred = torch.randn(4, 3, d, generator=gen, requires_grad=True)
    for kind in ("smooth_l1", "mse", "cosine"):
        assert crossjepa_loss(standardised, target, mean, std, kind=kind).item() == pytest.approx(0.0, abs=1e-3)
        loss = crossjepa_loss(pred, target, mean, std, kind=kind)
        assert loss.ndim == 0 and math.isfinite(loss.item()) and loss.item() > 0
    mse = crossjepa_loss(pred, target, mean, std, kind="mse")
    assert mse.item() == pytest.approx(((pred - standardised) ** 2).mean().item(), rel=1e-4)
    cos = crossjepa_loss(pred, target, mean, std, kind="cosine")
    expected = (1 - (pred * standardised).sum(-1) / (pred.norm(dim=-1) * standardised.norm(dim=-1))).mean()
    assert cos.item() == pytest.approx(expected.item(), rel=1e-4)
    scaled = crossjepa_loss(3.0 * pred, target, mean, std, kind="cosine")  # cosine ignores the length
    assert scaled.item() == pytest.approx(cos.item(), rel=1e-5)
    opposite = crossjepa_loss(-standardised, target, mean, std, kind="cosine")
    assert opposite.item() == pytest.approx(2.0, abs=1e-3)
    mse.backward()
    assert torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="kind"):
        crossjepa_loss(pred, target, mean, std, kind="l3")
    with pytest.raises(ValueError, match="target"):
        crossjepa_loss(pred, target[:, :2], mean, std)
