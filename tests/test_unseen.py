"""Unseen objects: a stratified, seeded carve of the training split that pretraining never sees (neither its
batches nor the held-out R^2) and that `probe --unseen` scores on once, with C chosen on the other objects."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from crossjepa.data import open_dataset
from crossjepa.data.carve import carve_unseen, read_unseen
from crossjepa.eval.config import ProbeConfig
from crossjepa.ops import ReferenceFallbackWarning

DATA = "synthetic:48"  # 12 classes x 4 objects


class Labelled:
    """A dataset of `counts[c]` objects of class c (in a shuffled order) with a label array, like the readers."""

    def __init__(self, counts, seed=0, tag="a"):
        self.labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
        self.classes = [f"class{c}" for c in range(len(counts))]
        self.tag = tag

    def __len__(self):
        return len(self.labels)

    def fingerprint(self):
        return f"labelled-{self.tag}-{len(self)}"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    from crossjepa.teacher import build_cache, load_teacher

    out = tmp_path_factory.mktemp("cache") / "cache"
    teacher = load_teacher("vit_tiny_patch16_224", random_init=True, image_size=32, pooling="mean")
    return build_cache(open_dataset(DATA, split="train"), out, teacher, num_views=4, batch_size=64, progress=False)


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReferenceFallbackWarning)
        yield


def test_carve_is_stratified_seeded_and_deterministic():
    data = Labelled([30, 20, 10])
    record = carve_unseen(data, 0.2, seed=5)
    ids = np.asarray(record["objects"])
    assert np.array_equal(ids, np.unique(ids))  # sorted, distinct
    assert Counter(data.labels[ids].tolist()) == {0: 6, 1: 4, 2: 2}  # 20 % of every class
    assert record["class_counts"] == {"class0": 6, "class1": 4, "class2": 2} and record["num_unseen"] == 12
    assert record["dataset"] == {"fingerprint": "labelled-a-60", "num_objects": 60}
    assert carve_unseen(data, 0.2, seed=5) == record  # deterministic
    assert carve_unseen(data, 0.2, seed=6)["objects"] != record["objects"]  # and seeded
    with pytest.raises(ValueError, match="unseen_fraction"):
        carve_unseen(data, 0.0, seed=0)
    with pytest.raises(ValueError, match="unlabelled"):
        unlabelled = Labelled([5, 5])
        unlabelled.labels = np.full(10, -1)
        carve_unseen(unlabelled, 0.2, seed=0)


def test_heldout_objects_are_drawn_outside_the_unseen_ones():
    from crossjepa.train.heldout import split_heldout

    unseen = np.arange(0, 100, 5)
    train, held = split_heldout(100, 0.1, seed=3, unseen=unseen)
    assert len(held) == 8  # 10 % of the 80 objects pretraining may use
    assert not set(held) & set(unseen) and not set(train) & set(unseen) and not set(train) & set(held)
    assert sorted(set(train) | set(held) | set(unseen)) == list(range(100))
    # Without unseen objects, the draw of every earlier run (so their held-out R^2 stays comparable).
    assert np.array_equal(
        split_heldout(100, 0.05, seed=3)[1], np.sort(np.random.default_rng([3, 7919]).permutation(100)[:5])
    )


def test_unseen_fraction_is_validated():
    from crossjepa.train.config import TrainConfig

    for bad, error in ((-0.1, ValueError), (0.5, ValueError), ("0.2", TypeError), (True, TypeError)):
        with pytest.raises(error, match="unseen_fraction"):
            TrainConfig(unseen_fraction=bad)
    with pytest.raises(ValueError, match="unseen_seed"):
        TrainConfig(unseen_seed=-1)


class Recording:
    """A dataset that records every object read from it (labels come from an array, as for file readers)."""

    def __init__(self, dataset):
        self.dataset, self.read = dataset, []
        self.labels = np.array([i % 12 for i in range(len(dataset))])  # SyntheticShapes' rule
        self.classes = dataset.classes

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.read.append(int(i))
        return self.dataset[i]

    def fingerprint(self):
        return self.dataset.fingerprint()


def test_pretraining_never_reads_an_unseen_object(cache_dir, tmp_path, monkeypatch, one_thread):
    import crossjepa.train.pretrain as pretrain_module
    from crossjepa.data.targets import CachedTargets
    from crossjepa.train.config import TrainConfig

    recording = Recording(open_dataset(DATA, split="train"))
    monkeypatch.setattr(pretrain_module, "open_dataset", lambda spec, split: recording)
    target_rows, heldout_calls = [], []
    real_read, real_scores = CachedTargets.read, pretrain_module.heldout_scores

    def read_spy(self, key, index):
        target_rows.extend(self.rows[np.asarray(index)].tolist())
        return real_read(self, key, index)

    def scores_spy(model, dataset, ids, *args, **kwargs):
        heldout_calls.append(np.asarray(ids).tolist())
        return real_scores(model, dataset, ids, *args, **kwargs)

    monkeypatch.setattr(CachedTargets, "read", read_spy)
    monkeypatch.setattr(pretrain_module, "heldout_scores", scores_spy)
    out = tmp_path / "run"
    cfg = TrainConfig(
        data=DATA,
        cache=str(cache_dir),
        out=str(out),
        preset="tiny",
        batch_size=8,
        device="cpu",
        num_workers=0,
        max_steps=8,
        unseen_fraction=0.25,
        unseen_seed=1,
        heldout_fraction=0.1,
    )
    pretrain_module.pretrain(cfg, progress=False)

    record = json.loads((out / "unseen_objects.json").read_text())
    unseen = set(record["objects"])
    assert record == carve_unseen(recording, 0.25, 1) and len(unseen) == 12  # one object of every class
    heldout = set(heldout_calls[0])
    assert len(heldout_calls) == 2 and all(set(c) == heldout for c in heldout_calls)  # after each epoch
    assert len(heldout) == 4 and not heldout & unseen  # 10 % of the 36 others
    trained = set(range(48)) - unseen - heldout
    # Two epochs of 4 batches of 8: every trainable object was drawn, and nothing else.
    assert set(target_rows) == trained and len(target_rows) == 64
    assert set(recording.read) == trained | heldout  # the held-out R^2 reads its own objects, never unseen ones


def test_unseen_command_writes_the_carve_pretrain_writes(cache_dir, tmp_path, monkeypatch, one_thread):
    from crossjepa.cli import main
    from crossjepa.train.config import TrainConfig
    from crossjepa.train.pretrain import pretrain

    run = tmp_path / "run"
    assert (
        main(
            [
                "-q",
                "pretrain",
                "--data",
                DATA,
                "--cache",
                str(cache_dir),
                "--out",
                str(run),
                "--preset",
                "tiny",
                "--batch-size",
                "8",
                "--device",
                "cpu",
                "--max-steps",
                "1",
                "--set",
                "num_workers=0",
                "--unseen-fraction",
                "0.25",
                "--unseen-seed",
                "3",
            ]
        )
        == 0
    )
    carved = tmp_path / "unseen.json"
    assert main(["-q", "unseen", "--data", DATA, "--fraction", "0.25", "--seed", "3", "--out", str(carved)]) == 0
    assert json.loads(carved.read_text()) == json.loads((run / "unseen_objects.json").read_text())
    # A later run in the same folder without a carve removes the file that no longer describes it.
    pretrain(
        TrainConfig(
            data=DATA,
            cache=str(cache_dir),
            out=str(run),
            preset="tiny",
            batch_size=8,
            device="cpu",
            num_workers=0,
            max_steps=1,
        ),
        progress=False,
    )
    assert not (run / "unseen_objects.json").exists()


def _carve_file(tmp_path, fraction=0.25, seed=0, data=DATA):
    from crossjepa.atomic import write_json

    path = tmp_path / "unseen_objects.json"
    write_json(path, carve_unseen(open_dataset(data, split="train"), fraction, seed))
    return path


def test_probe_fits_on_the_other_objects_and_scores_on_the_unseen_ones(tmp_path, monkeypatch, quiet):
    import crossjepa.eval.probe_run as probe_run

    path = _carve_file(tmp_path)
    unseen = np.asarray(json.loads(path.read_text())["objects"])
    seen = []
    real = probe_run.probe_encoder

    def spy(model, train_set, test_set, **kwargs):
        seen.append((train_set, test_set))
        return real(model, train_set, test_set, **kwargs)

    monkeypatch.setattr(probe_run, "probe_encoder", spy)
    torch.manual_seed(0)
    cfg = ProbeConfig(data=DATA, random_init=True, preset="tiny", seeds=1, folds=2, unseen=str(path), device="cpu")
    report = probe_run.probe_checkpoint(cfg, progress=False)
    ((train_set, test_set),) = seen
    assert np.array_equal(test_set.ids, unseen)
    assert np.array_equal(train_set.ids, np.setdiff1d(np.arange(48), unseen))
    full = open_dataset(DATA, split="train")
    i = int(unseen[3])
    assert test_set.labels[3] == full[i]["label"] and torch.equal(test_set[3]["points"], full[i]["points"])
    assert report["test_objects"] == 12 and report["train_objects"] == 36
    assert report["unseen"] == {"file": str(path), "fraction": 0.25, "seed": 0, "objects": 12, "train_objects": 36}
    assert "36 training objects outside" in report["protocol"] and "12 unseen objects" in report["protocol"]


def test_teacher_ceiling_uses_the_same_objects(cache_dir, tmp_path, monkeypatch):
    import crossjepa.eval.probe as probe_module
    from crossjepa.eval.probe_run import probe_teacher_cache
    from crossjepa.teacher import open_cache

    path = _carve_file(tmp_path, seed=2)
    unseen = np.asarray(json.loads(path.read_text())["objects"])
    rest = np.setdiff1d(np.arange(48), unseen)
    x = np.asarray(open_cache(cache_dir).embeddings, dtype=np.float32).mean(axis=1).astype(np.float64)
    rows = [r.tobytes() for r in x]
    chosen_on, scored = [], []
    real_select, real_probe = probe_module.select_C, probe_module.linear_probe

    def select_spy(xs, ys, *args):
        chosen_on.append({r.tobytes() for r in np.asarray(xs, dtype=np.float64)})
        return real_select(xs, ys, *args)

    def probe_spy(train_x, train_y, test_x, test_y, *args, **kwargs):
        scored.append(np.asarray(test_x, dtype=np.float64))
        return real_probe(train_x, train_y, test_x, test_y, *args, **kwargs)

    monkeypatch.setattr(probe_module, "select_C", select_spy)
    monkeypatch.setattr(probe_module, "linear_probe", probe_spy)
    report = probe_teacher_cache(
        ProbeConfig(data=DATA, teacher_cache=str(cache_dir), unseen=str(path), seeds=2, folds=3)
    )
    assert len(chosen_on) == 2 and all(c <= {rows[i] for i in rest} for c in chosen_on)  # C: never a carved row
    assert len(scored) == 1 and np.array_equal(scored[0], x[unseen])  # scored on exactly the carved objects
    assert report["unseen"]["objects"] == 12 and report["train_objects"] == 36
    assert len(report["accuracy"]["per_seed"]) == 2 and "unseen objects" in report["protocol"]


def test_an_unseen_file_of_other_data_is_one_clear_error(tmp_path, capsys):
    from crossjepa.cli import main

    path = _carve_file(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"--unseen .*carved from dataset synthetic-\w+ \(48 objects\), not "
        r"--data's synthetic-\w+ \(40 objects\)",
    ):
        read_unseen(path, open_dataset("synthetic:40", split="train"))
    out = tmp_path / "probe.json"
    code = main(
        [
            "-q",
            "probe",
            "--data",
            "synthetic:40",
            "--random-init",
            "--preset",
            "tiny",
            "--unseen",
            str(path),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--unseen" in err[0] and "40 objects" in err[0], err
    assert not out.exists()
    other = tmp_path / "other.json"
    for text, needle in (
        ("{", "not a JSON file"),
        ('{"format": "x"}', "expected an unseen-objects file"),
        (json.dumps({**json.loads(path.read_text()), "objects": [3, 2]}), "sorted distinct"),
    ):
        other.write_text(text)
        with pytest.raises(ValueError, match=needle):
            read_unseen(other, open_dataset(DATA, split="train"))
    with pytest.raises(FileNotFoundError, match="--unseen"):
        read_unseen(tmp_path / "missing.json", open_dataset(DATA, split="train"))
