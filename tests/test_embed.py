"""crossjepa embed and crossjepa.load_encoder: one read-out, the same numbers through both faces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import crossjepa
from crossjepa.cli import main
from crossjepa.data import open_dataset, pack
from crossjepa.data.subsample import fixed_size_batches
from crossjepa.eval import probe as probe_module
from crossjepa.models import build
from crossjepa.train.checkpoint import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A checkpoint as `crossjepa pretrain` writes it, and the model it holds."""
    torch.manual_seed(0)
    model = build("tiny").eval()
    path = save_weights(model, tmp_path_factory.mktemp("ckpt") / "model.safetensors")
    return path, model


def test_load_encoder_round_trips_a_pretrained_checkpoint(pretrained):
    path, model = pretrained
    encoder = crossjepa.load_encoder(path)
    assert not encoder.training and encoder.num_points == model.config.tokenizer.num_points
    state = model.encoder.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in encoder.encoder.state_dict().items())
    points = torch.randn(3, 256, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(encoder(points), model.encoder.features(points))
        assert encoder.tokens(points).shape == (3, 1 + model.config.tokenizer.num_groups, model.config.encoder.width)


def _embed(path, data, out, *args):
    assert main(["-q", "embed", "--data", data, "--checkpoint", str(path), "--out", str(out), *args]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    return np.load(out, mmap_mode="r"), np.load(out.with_suffix(".labels.npy")), meta


def _probe_features(monkeypatch, tmp_path, path, data, seeds):
    """The training features `crossjepa probe` fits its SVM on, per seed."""
    seen = []

    def spy(real):
        def record(x, *args):
            seen.append(np.array(x, copy=True))
            return real(x, *args)

        return record

    for name in ("linear_probe", "cross_validated_probe"):  # with a test split, and without (nested CV)
        monkeypatch.setattr(probe_module, name, spy(getattr(probe_module, name)))
    argv = ["-q", "probe", "--data", data, "--checkpoint", str(path), "--out", str(tmp_path / "probe.json")]
    assert main([*argv, "--seeds", str(seeds), "--folds", "2", "--device", "cpu"]) == 0
    return seen


def test_embed_rows_the_probes_features_and_load_encoder_agree(pretrained, tmp_path, monkeypatch):
    path, _ = pretrained
    encoder = crossjepa.load_encoder(path)
    packed = str(pack("synthetic:48", tmp_path / "packed", num_points=encoder.num_points, progress=False))
    feats, labels, meta = _embed(path, packed, tmp_path / "feats.npy", "--batch-size", "5", "--device", "cpu")
    probe_x = _probe_features(monkeypatch, tmp_path, path, packed, seeds=1)[0]
    data = open_dataset(packed)  # clouds of the model's point count, used as stored
    with torch.no_grad():
        expected = encoder(torch.stack([data[i]["points"] for i in range(len(data))])).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probe_x, expected, rtol=1e-5, atol=1e-5)
    assert labels.tolist() == data.labels.tolist()
    assert meta["shape"] == list(expected.shape) and len(meta["names"]) == 48 and meta["classes"] == data.classes
    assert meta["readout"] == "features" and meta["split"] == "train"


def test_embed_seed_draws_the_probes_subsample_of_that_seed(pretrained, tmp_path, monkeypatch):
    path, _ = pretrained
    per_seed = _probe_features(monkeypatch, tmp_path, path, "synthetic:48", seeds=2)  # 2048 points per cloud
    assert not np.allclose(per_seed[0], per_seed[1])  # each seed its own random subsets
    for seed in (0, 1):
        feats, _, _ = _embed(path, "synthetic:48", tmp_path / f"s{seed}.npy", "--seed", str(seed), "--device", "cpu")
        np.testing.assert_allclose(feats, per_seed[seed], rtol=1e-5, atol=1e-5)


def test_embed_tokens_are_the_encoders_output_tokens(pretrained, tmp_path):
    path, _ = pretrained
    encoder = crossjepa.load_encoder(path)
    out = tmp_path / "tokens.npy"
    tokens, _, meta = _embed(path, "synthetic:7", out, "--tokens", "--split", "test", "--device", "cpu")
    assert meta["readout"] == "tokens" and meta["split"] == "test"
    ((_, points, _),) = fixed_size_batches(open_dataset("synthetic:7", "test"), encoder.num_points)  # the same clouds
    with torch.no_grad():
        np.testing.assert_allclose(tokens, encoder.tokens(points).numpy(), rtol=1e-5, atol=1e-5)


def test_embed_errors_are_one_line(pretrained, tmp_path, capsys):
    path, _ = pretrained
    assert (
        main(
            [
                "embed",
                "--data",
                "synthetic:4",
                "--checkpoint",
                str(path),
                "--out",
                str(tmp_path / "f.txt"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and ".npy" in err[0]
    assert (
        main(
            [
                "embed",
                "--data",
                "synthetic:4",
                "--checkpoint",
                str(tmp_path / "missing.safetensors"),
                "--out",
                str(tmp_path / "f.npy"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "missing.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "f.npy").exists()
