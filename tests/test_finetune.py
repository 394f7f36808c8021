"""crossjepa finetune: learns an easy set, selects on validation data only, scores the test split once, resumes
exactly, and runs end to end from the CLI at toy size."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from eval_shapes import Shapes
from safetensors.torch import load_file

from crossjepa.atomic import write_text
from crossjepa.cli import main
from crossjepa.config_io import apply_overrides
from crossjepa.eval import finetune_run
from crossjepa.eval.classifier import EncoderSource, PointClassifier
from crossjepa.eval.config import FinetuneConfig
from crossjepa.eval.finetune import fit

pytestmark = pytest.mark.usefixtures("one_thread")

# A tiny encoder learns the three easy classes in ~80 steps of 4 objects; BatchNorm's running statistics
# need about that many steps to settle, so fewer steps score at chance in eval mode whatever the weights.
EASY = [
    "train.epochs=14",
    "train.batch_size=4",
    "train.num_points=128",
    "train.num_workers=0",
    "train.optim.lr=0.002",
    "train.optim.warmup_fraction=0.1",
    "train.head_dropout=0",
    "train.head_hidden=64",
    "train.augment.scale=null",
    "train.augment.translate=0",
]


def config(tmp_path, *overrides) -> FinetuneConfig:
    cfg = FinetuneConfig(
        data="in-memory",
        out=str(tmp_path / "ft"),
        random_init=True,
        preset="tiny",
        seeds=1,
        val_fraction=1 / 3,
        device="cpu",
    )
    return apply_overrides(cfg, EASY + list(overrides))


def serve(monkeypatch, train, test) -> None:
    """Make run_finetune read these datasets for any --data."""
    monkeypatch.setattr(finetune_run, "open_dataset", lambda *a, **k: train)
    monkeypatch.setattr(finetune_run, "open_test_split", lambda *a, **k: test)


def spy_on_fit(monkeypatch, test) -> list[dict]:
    """Record each fit call's train/val rows, and whether test objects were read while it ran."""
    calls, real = [], finetune_run.fit

    def spy(model, train_set, val_set, *args, **kwargs):
        before = dict(test.reads) if test is not None else None
        result = real(model, train_set, val_set, *args, **kwargs)
        calls.append(
            {
                "train": set(train_set.ids.tolist()),
                "val": set(val_set.ids.tolist()),
                "test_read": test is not None and test.reads != before,
            }
        )
        return result

    monkeypatch.setattr(finetune_run, "fit", spy)
    return calls


def test_fine_tuning_beats_chance_and_reads_the_test_split_once_after_selection(tmp_path, monkeypatch):
    train, test = Shapes(36, seed=0), Shapes(30, seed=2)
    serve(monkeypatch, train, test)
    calls = spy_on_fit(monkeypatch, test)
    report = finetune_run.run_finetune(config(tmp_path, "vote=2"), progress=False)

    assert report["accuracy"]["mean"] >= 0.7  # chance is 1/3
    assert report["vote"]["copies"] == 2 and "not a best-of-many" in report["vote"]["protocol"]
    (call,) = calls
    assert not call["test_read"]  # selection never saw the test split
    assert not call["train"] & call["val"] and len(call["val"]) == 12 and len(call["train"]) == 24
    # Test objects: read once for the score and once per voting copy, all after selection.
    assert set(test.reads.values()) == {3} and len(test.reads) == len(test)
    history = json.loads((tmp_path / "ft" / "seed_0" / "result.json").read_text())["history"]
    val = [h["val_accuracy"] for h in history]
    assert report["best_epoch"] == [1 + int(np.argmax(val))] and report["val_accuracy"] == [max(val)]
    assert (tmp_path / "ft" / "training_curve.png").stat().st_size > 0


def test_test_labels_cannot_move_the_selection(tmp_path, monkeypatch):
    runs = []
    for shuffled in (False, True):
        test = Shapes(12, seed=2)
        if shuffled:
            test.labels = np.random.default_rng(0).permutation(test.labels)
        serve(monkeypatch, Shapes(24, seed=0), test)
        out = tmp_path / f"run{int(shuffled)}"
        report = finetune_run.run_finetune(config(out, "train.epochs=3"), progress=False)
        weights = load_file(str(out / "ft" / "seed_0" / "classifier.safetensors"))
        runs.append((report, weights))
    (a, wa), (b, wb) = runs
    assert a["val_accuracy"] == b["val_accuracy"] and a["best_epoch"] == b["best_epoch"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_without_a_test_split_three_disjoint_stratified_parts_are_carved(tmp_path, monkeypatch):
    train = Shapes(60, seed=0)
    serve(monkeypatch, train, None)
    calls = spy_on_fit(monkeypatch, None)
    report = finetune_run.run_finetune(
        config(tmp_path, "train.epochs=1", "val_fraction=0.25", "test_fraction=0.2"), progress=False
    )
    assert report["protocol"].startswith("fine-tune") and "no test split" in report["protocol"]
    (call,) = calls
    test_rows = set(range(60)) - call["train"] - call["val"]
    assert len(test_rows) == report["splits"][0]["test"] == 12 and not call["train"] & call["val"]
    assert np.bincount(train.labels[sorted(test_rows)]).tolist() == [4, 4, 4]  # stratified


def test_unseen_objects_are_the_test_part_and_label_fraction_thins_only_training(tmp_path, monkeypatch):
    from crossjepa.data.carve import carve_unseen

    train = Shapes(60, seed=0)
    train.fingerprint = lambda: "shapes-0"
    record = carve_unseen(train, 0.2, seed=3)
    unseen = tmp_path / "unseen_objects.json"
    write_text(unseen, json.dumps(record))
    serve(monkeypatch, train, Shapes(9, seed=5))  # a test split the unseen carve must override
    calls = spy_on_fit(monkeypatch, None)
    cfg = config(tmp_path, "train.epochs=1", "val_fraction=0.25", f"unseen={unseen}", "label_fraction=0.5")
    report = finetune_run.run_finetune(cfg, progress=False)
    (call,) = calls
    held = set(record["objects"])
    assert report["splits"][0]["test"] == len(held) == 12 and not (call["train"] | call["val"]) & held
    assert len(call["val"]) == 12 and len(call["train"]) == 18  # half of the 36 left after validation
    assert np.bincount(train.labels[sorted(call["train"])]).tolist() == [6, 6, 6]  # stratified
    assert "unseen objects" in report["protocol"] and "0.5 of the training part" in report["protocol"]


def test_resume_after_a_kill_ends_with_identical_weights(tmp_path):
    cfg = config(
        tmp_path,
        "train.epochs=3",
        "train.checkpoint_every=1",
        "train.head_dropout=0.5",
        "train.augment.scale=[0.8, 1.25]",
        "train.augment.translate=0.2",
    ).train  # RNG in every step
    train, val = Shapes(16, seed=0), Shapes(6, seed=1)

    def run(resume: bool):
        torch.manual_seed(0)
        model = PointClassifier(EncoderSource(None, True, "tiny")(), 3, cfg.head_hidden, cfg.head_dropout)
        result = fit(
            model,
            train,
            val,
            cfg,
            out=tmp_path / "fit",
            seed=0,
            device=torch.device("cpu"),
            num_points=128,
            augment=cfg.augment.resolve(False),
            resume=resume,
            progress=False,
        )
        return model.state_dict(), result

    full, full_result = run(resume=False)
    ckpts = tmp_path / "fit" / "checkpoints"
    shutil.rmtree(ckpts / "step_00000003")  # killed after epoch 2's checkpoint
    write_text(ckpts / "latest", "step_00000002\n")
    resumed, resumed_result = run(resume=True)
    assert resumed_result == full_result
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_cli_end_to_end_resume_and_errors(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "-q",
        "finetune",
        "--data",
        "synthetic:48",
        "--random-init",
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--seeds",
        "2",
        "--val-fraction",
        "0.25",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--set",
        "train.num_points=64",
        "--set",
        "train.num_workers=0",
    ]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["accuracy"]["per_seed"]) == 2 and report["splits"][0] == {"train": 36, "val": 12, "test": 48}
    assert report["encoder"] == "random-init (tiny)" and report["vote"] is None
    assert "test accuracy" in capsys.readouterr().out
    assert main(argv + ["--resume"]) == 0  # both seeds finished: read back, same report
    assert json.loads((out / "report.json").read_text())["accuracy"] == report["accuracy"]
    assert main(argv + ["--resume", "--set", "train.label_smoothing=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.label_smoothing differs" in err[0]
    assert main(argv + ["--set", "train.optim.layer_decay=1.5"]) == 2
    assert "train.optim.layer_decay" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["finetune", "fewshot", "embed"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0 and f"usage: crossjepa {command}" in capsys.readouterr().out
