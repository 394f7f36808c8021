"""A missing split is a typed error (data.SplitNotFound): the probe falls back to nested CV on it and on
nothing else, whatever an error's text says."""

import numpy as np
import pytest

from crossjepa.data import SplitNotFound, open_dataset, pack
from crossjepa.eval.probe_run import open_test_split


def _class_folders(root, splits, rng):
    for name in ("chair", "table"):
        for split in splits:
            (root / name / split).mkdir(parents=True)
            np.save(root / name / split / "a.npy", rng.standard_normal((40, 3)).astype(np.float32))
    return root


def test_a_source_without_a_test_split_falls_back_to_nested_cv(tmp_path):
    root = _class_folders(tmp_path / "train_only", ["train"], np.random.default_rng(0))
    with pytest.raises(SplitNotFound, match="no point or mesh files for split 'test'"):
        open_dataset(root, split="test")
    assert open_test_split(str(root)) is None


def test_a_source_with_a_test_split_opens_it(tmp_path):
    root = _class_folders(tmp_path / "both", ["train", "test"], np.random.default_rng(1))
    test = open_test_split(str(root))
    assert test.split == "test" and len(test) == 2


def test_packed_splits_without_test_fall_back(tmp_path):
    src = _class_folders(tmp_path / "src", ["train"], np.random.default_rng(2))
    pack(str(src), tmp_path / "packed" / "train", num_points=16, progress=False)
    with pytest.raises(SplitNotFound):
        open_dataset(tmp_path / "packed" / "train", split="test")
    assert open_test_split(str(tmp_path / "packed")) is None
    assert open_test_split(str(tmp_path / "packed" / "train")) is None


def test_other_errors_surface_even_when_their_text_says_split(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match="nowhere") as err:
        open_test_split(str(missing))
    assert not isinstance(err.value, SplitNotFound)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("not a dataset")
    with pytest.raises(ValueError, match="unknown dataset layout.*split") as err:
        open_test_split(str(tmp_path / "odd"))
    assert not isinstance(err.value, SplitNotFound)
