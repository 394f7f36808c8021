"""crossjepa embed and crossjepa.load_encoder: one read-out, the same numbers through both faces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import crossjepa
from crossjepa.cli import main
from crossjepa.data import open_dataset
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


def test_embed_rows_equal_load_encoder_features(pretrained, tmp_path, capsys):
    path, _ = pretrained
    out = tmp_path / "feats.npy"
    assert (
        main(
            [
                "-q",
                "embed",
                "--data",
                "synthetic:7",
                "--checkpoint",
                str(path),
                "--out",
                str(out),
                "--batch-size",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "feats.labels.npy" in capsys.readouterr().out
    feats = np.load(out, mmap_mode="r")
    labels = np.load(tmp_path / "feats.labels.npy")
    meta = json.loads((tmp_path / "feats.json").read_text())

    encoder = crossjepa.load_encoder(path)
    data = open_dataset("synthetic:7", num_points=encoder.num_points)
    points = torch.stack([data[i]["points"] for i in range(len(data))])
    with torch.no_grad():
        expected = encoder(points).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-5)
    assert labels.tolist() == [data[i]["label"] for i in range(len(data))]
    assert meta["shape"] == list(expected.shape) and len(meta["names"]) == 7 and meta["classes"] == data.classes
    assert meta["readout"] == "features" and meta["split"] == "train"

    tokens_out = tmp_path / "tokens.npy"
    assert (
        main(
            [
                "-q",
                "embed",
                "--data",
                "synthetic:7",
                "--checkpoint",
                str(path),
                "--out",
                str(tokens_out),
                "--tokens",
                "--split",
                "test",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    test_points = torch.stack([open_dataset("synthetic:7", "test", encoder.num_points)[i]["points"] for i in range(7)])
    with torch.no_grad():
        np.testing.assert_allclose(
            np.load(tokens_out, mmap_mode="r"), encoder.tokens(test_points).numpy(), rtol=1e-5, atol=1e-5
        )


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
