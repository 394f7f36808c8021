"""The frozen timm teacher and the torchvision stand-in that lets timm import without torchvision."""

import importlib.abc
import logging
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from crossjepa.hashing import file_sha256
from crossjepa.teacher import load_teacher, torchvision_stub

ROOT = Path(__file__).resolve().parents[1]
NAME, SIZE, DIM = "test_vit", 32, 64  # timm's 0.3M-parameter test ViT: fast to build on CPU


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher():
    return load_teacher(NAME, random_init=True, image_size=SIZE, seed=3)


@pytest.fixture
def images():
    seed = int.from_bytes(os.urandom(4), "little")
    return torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


_STUB_SCRIPT = textwrap.dedent("""
    import importlib.abc, logging, sys

    class BlockTorchvision(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "torchvision":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, BlockTorchvision())
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch
    from crossjepa.teacher import load_teacher, torchvision_stub
    assert "timm" not in sys.modules
    assert load_teacher("test_vit", random_init=True, image_size=32, pooling="both").embed_dim == 128
    assert load_teacher("test_vit", random_init=True, image_size=32).embed_dim == 64  # timm imported: no stand-in
    import timm
    from timm.data import dataset_factory
    from timm.layers import freeze_batch_norm_2d
    assert isinstance(freeze_batch_norm_2d(torch.nn.BatchNorm2d(4)), torchvision_stub.FrozenBatchNorm2d)
    assert not any(name.split(".")[0] == "torchvision" for name in sys.modules)  # the stand-in served timm only
    try:
        import torchvision
        raise AssertionError("the rest of the process must find torchvision missing")
    except ModuleNotFoundError:
        pass
    try:
        dataset_factory.CIFAR10("/nonexistent")
        raise AssertionError("stand-in datasets must not construct")
    except RuntimeError as exc:
        assert "stand-in" in str(exc)
    print("STUB-OK")
""")


def test_timm_works_through_the_stub_when_torchvision_is_blocked():
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _STUB_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STUB-OK" in proc.stdout
    assert proc.stderr.count("minimal torchvision stand-in") == 1  # said once, for the one import of timm
    assert "torchvision is not installed" in proc.stderr


def test_real_torchvision_is_preferred(monkeypatch):
    fake = types.ModuleType("torchvision")
    fake.__version__ = "9.9.9"
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    assert torchvision_stub.missing_torchvision() is None
    assert sys.modules["torchvision"] is fake


def test_broken_torchvision_falls_back_with_a_warning(monkeypatch, caplog):
    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "torchvision":
                raise RuntimeError("operator torchvision::nms does not exist")

    for key in [k for k in sys.modules if k.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setattr(sys, "meta_path", [Broken()] + sys.meta_path)
    missing = torchvision_stub.missing_torchvision()
    assert missing is not None and missing[0] == logging.WARNING and "torchvision::nms" in missing[1]
    with caplog.at_level(logging.WARNING, logger="crossjepa.teacher.torchvision_stub"):
        with torchvision_stub.standing_in(*missing):
            assert torchvision_stub.is_stub()
    assert "torchvision" not in sys.modules
    assert "torchvision::nms" in caplog.text


def test_frozen_batchnorm_matches_batchnorm_in_eval():
    bn = torch.nn.BatchNorm2d(5).eval()
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.randn(5))
        bn.running_var.copy_(torch.rand(5) + 0.1)
    frozen = torchvision_stub.FrozenBatchNorm2d(5)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(frozen(x), bn(x))


def test_random_init_is_announced_recorded_and_deterministic(caplog, teacher):
    rng_before = torch.get_rng_state()
    with caplog.at_level(logging.WARNING, logger="crossjepa.teacher.model"):
        again = load_teacher(NAME, random_init=True, image_size=SIZE, seed=3)
    assert "RANDOMLY INITIALISED" in caplog.text and NAME in caplog.text
    assert again.weights_id == "random-init"
    assert again.params_sha256 == teacher.params_sha256
    assert load_teacher(NAME, random_init=True, image_size=SIZE, seed=4).params_sha256 != teacher.params_sha256
    assert torch.equal(torch.get_rng_state(), rng_before)  # seeding did not touch the global RNG


def test_teacher_is_frozen_and_stays_in_eval(teacher, images):
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not teacher.model.training
    out = teacher(images)
    assert out.dtype == torch.float32 and not out.requires_grad and out.shape == (4, teacher.embed_dim)


def test_pooling_widths_and_both_is_the_concatenation(images):
    cls = load_teacher(NAME, random_init=True, image_size=SIZE, pooling="cls")
    mean = load_teacher(NAME, random_init=True, image_size=SIZE, pooling="mean")
    both = load_teacher(NAME, random_init=True, image_size=SIZE, pooling="both")
    assert (cls.embed_dim, mean.embed_dim, both.embed_dim) == (DIM, DIM, 2 * DIM)
    torch.testing.assert_close(both(images), torch.cat([cls(images), mean(images)], dim=1))
    tokens = mean.model.forward_features((images - mean.mean) / mean.std)
    torch.testing.assert_close(mean(images), tokens[:, mean.model.num_prefix_tokens :].mean(1))
    with pytest.raises(ValueError, match="pooling"):
        load_teacher(NAME, random_init=True, image_size=SIZE, pooling="max")


def test_images_are_resized_to_the_teacher_resolution(teacher, images):
    big = F.interpolate(images, size=(48, 48), mode="bilinear", align_corners=False)
    expected = teacher(F.interpolate(big, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True))
    torch.testing.assert_close(teacher(big), expected)
    with pytest.raises(ValueError, match="images"):
        teacher(images[:, :2])


def test_weights_round_trip_through_safetensors_and_nested_pth(tmp_path, teacher, images):
    state = {k: v.contiguous() for k, v in teacher.model.state_dict().items()}
    st = tmp_path / "teacher.safetensors"
    save_file(state, str(st))
    pth = tmp_path / "teacher.pth"
    torch.save({"model": {"module." + k: v for k, v in state.items()}, "epoch": 3}, pth)
    expected = teacher(images)
    for path in (st, pth):
        loaded = load_teacher(NAME, weights=path, image_size=SIZE)
        assert loaded.weights_id == file_sha256(path)
        assert loaded.params_sha256 == teacher.params_sha256
        torch.testing.assert_close(loaded(images), expected, rtol=0, atol=0)


def test_weights_saved_at_another_resolution_load_with_resampled_positions(tmp_path, images):
    big = load_teacher(NAME, random_init=True, image_size=2 * SIZE, seed=5)
    path = tmp_path / "big.safetensors"
    save_file({k: v.contiguous() for k, v in big.model.state_dict().items()}, str(path))
    small = load_teacher(NAME, weights=path, image_size=SIZE)
    assert small.model.pos_embed.shape[1] < big.model.pos_embed.shape[1]
    torch.testing.assert_close(small.model.blocks[0].attn.qkv.weight, big.model.blocks[0].attn.qkv.weight)
    assert torch.isfinite(small(images)).all()


def test_bad_weights_files_give_clear_errors(tmp_path, teacher):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match="cannot read .*garbage.safetensors"):
        load_teacher(NAME, weights=garbage, image_size=SIZE)
    other = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.randn(3, 3), "bar.bias": torch.randn(3)}, str(other))
    with pytest.raises(ValueError, match="other.safetensors does not fit"):
        load_teacher(NAME, weights=other, image_size=SIZE)
    truncated = tmp_path / "truncated.safetensors"
    state = {k: v.contiguous() for k, v in teacher.model.state_dict().items() if k != "norm.weight"}
    save_file(state, str(truncated))
    with pytest.raises(ValueError, match="truncated.safetensors does not fit.*missing keys"):
        load_teacher(NAME, weights=truncated, image_size=SIZE)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_teacher(NAME, weights=tmp_path / "missing.pth", image_size=SIZE)
    text = tmp_path / "weights.txt"
    text.write_text("x")
    with pytest.raises(ValueError, match="safetensors"):
        load_teacher(NAME, weights=text, image_size=SIZE)
    with pytest.raises(ValueError, match="random_init"):
        load_teacher(NAME, weights=garbage, random_init=True, image_size=SIZE)


def test_bad_names_and_missing_timm(monkeypatch):
    with pytest.raises(ValueError, match="unknown timm model 'not_a_model'"):
        load_teacher("not_a_model", random_init=True)
    with pytest.raises(ValueError, match="image_size"):
        load_teacher(NAME, random_init=True, image_size=0)
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail like a missing package
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps timm"):
        load_teacher(NAME, random_init=True)
