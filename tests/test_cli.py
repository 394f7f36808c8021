"""The CLI: every command has --help; bad input gives a non-zero exit and exactly one clear line, no traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crossjepa.cli import main

COMMANDS = ["demo", "render", "cache", "pretrain", "probe", "pack", "bench", "profile", "finetune", "fewshot", "embed"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: crossjepa " + command in capsys.readouterr().out


def _one_error_line(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_unknown_flag(capsys):
    line = _one_error_line(
        capsys, ["probe", "--data", "synthetic:8", "--random-init", "--out", "x.json", "--frobnicate"]
    )
    assert "unrecognized arguments: --frobnicate" in line


def test_missing_data_path(tmp_path, capsys):
    line = _one_error_line(capsys, ["render", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert "nowhere" in line


def test_unknown_layout_says_what_was_looked_for(tmp_path, capsys):
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01")
    line = _one_error_line(capsys, ["render", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "looked for" in line or "expected" in line


def test_wrong_teacher_name(tmp_path, capsys):
    line = _one_error_line(
        capsys,
        [
            "cache",
            "--data",
            "synthetic:4",
            "--out",
            str(tmp_path / "c"),
            "--teacher",
            "no_such_model_xyz",
            "--teacher-random-init",
            "--device",
            "cpu",
        ],
    )
    assert "no_such_model_xyz" in line


def test_unreadable_weights_file(tmp_path, capsys):
    weights = tmp_path / "teacher.safetensors"
    weights.write_bytes(b"this is not a weights file")
    line = _one_error_line(
        capsys,
        [
            "cache",
            "--data",
            "synthetic:4",
            "--out",
            str(tmp_path / "c"),
            "--teacher",
            "test_vit",
            "--teacher-weights",
            str(weights),
            "--device",
            "cpu",
        ],
    )
    assert "teacher.safetensors" in line


def test_empty_cache_directory(tmp_path, capsys):
    (tmp_path / "cache").mkdir()
    line = _one_error_line(
        capsys,
        [
            "pretrain",
            "--data",
            "synthetic:8",
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "run"),
            "--device",
            "cpu",
        ],
    )
    assert "cache" in line


def test_verify_of_a_non_cache(tmp_path, capsys):
    np.save(tmp_path / "embeddings.npy", np.ones((2, 2, 2), np.float16))
    assert str(tmp_path) in _one_error_line(capsys, ["cache", "--verify", str(tmp_path)])


def test_bad_preset(tmp_path, capsys):
    line = _one_error_line(
        capsys,
        [
            "probe",
            "--data",
            "synthetic:24",
            "--random-init",
            "--preset",
            "huge",
            "--out",
            str(tmp_path / "p.json"),
            "--device",
            "cpu",
        ],
    )
    assert "huge" in line and "tiny" in line


def test_bad_override_names_the_key(tmp_path, capsys):
    (tmp_path / "cache").mkdir()
    line = _one_error_line(
        capsys,
        [
            "pretrain",
            "--data",
            "synthetic:8",
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "run"),
            "--set",
            "optim.nope=1",
        ],
    )
    assert "optim.nope" in line


def test_probe_random_init_writes_report(tmp_path, capsys):
    out = tmp_path / "probe.json"
    code = main(
        [
            "-q",
            "probe",
            "--data",
            "synthetic:36",
            "--random-init",
            "--preset",
            "tiny",
            "--seeds",
            "2",
            "--folds",
            "2",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    per_seed = report["accuracy"]["per_seed"]
    assert len(per_seed) == 2 and report["accuracy"]["mean"] == pytest.approx(sum(per_seed) / 2)
    assert report["test_objects"] == 36 and report["encoder"] == "random-init (tiny)"
    assert "train split only" in report["protocol"]


def test_probe_of_one_class_is_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp_path / "chair" / split).mkdir(parents=True)
        for i in range(6):
            np.savetxt(tmp_path / "chair" / split / f"{i}.xyz", rng.normal(size=(64, 3)))
    out = tmp_path / "p.json"
    argv = ["probe", "--data", str(tmp_path), "--random-init", "--preset", "tiny", "--out", str(out)]
    line = _one_error_line(capsys, [*argv, "--folds", "2", "--device", "cpu"])
    assert line.endswith("fitted on: expected labels of at least 2 classes for a probe, got only label 0"), line
    assert not out.exists()


def test_probe_teacher_cache_is_the_same_protocol_on_view_averaged_embeddings(tmp_path):
    from crossjepa.data import open_dataset
    from crossjepa.eval.probe import cross_validated_probe
    from crossjepa.teacher import build_cache, load_teacher, open_cache

    data = "synthetic:72"  # 6 per class: nested 2-fold CV keeps at least 2 per class in every inner split
    dataset = open_dataset(data, split="train")
    teacher = load_teacher("test_vit", random_init=True, image_size=32)
    cache = build_cache(dataset, tmp_path / "cache", teacher, num_views=3, progress=False)
    out = tmp_path / "teacher.json"
    assert (
        main(
            [
                "-q",
                "probe",
                "--data",
                data,
                "--teacher-cache",
                str(cache),
                "--seeds",
                "2",
                "--folds",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    labels = np.array([dataset[i]["label"] for i in range(len(dataset))])
    expected = cross_validated_probe(
        np.asarray(open_cache(cache).embeddings, np.float32).mean(1), labels, seeds=(0, 1), folds=2
    )
    assert report["accuracy"] == expected["accuracy"] and "nested CV" in report["protocol"]
    assert report["encoder"].startswith("teacher test_vit")


def test_cache_split_and_shading_give_the_test_split_teacher_ceiling(tmp_path):
    from crossjepa.data import open_dataset
    from crossjepa.teacher import open_cache

    data, common = "synthetic:48", ["--teacher", "test_vit", "--teacher-random-init", "--image-size", "32"]
    common += ["--views", "2", "--num-points", "256", "--shading", "lambert", "--device", "cpu"]
    for split in ("train", "test"):
        argv = ["-q", "cache", "--data", data, "--split", split, "--out", str(tmp_path / split), *common]
        assert main(argv) == 0
    test_cache = open_cache(tmp_path / "test")
    test_cache.check_dataset(open_dataset(data, split="test", num_points=256))
    with pytest.raises(ValueError, match="was built for dataset"):
        test_cache.check_dataset(open_dataset(data, split="train", num_points=256))
    assert test_cache.meta["views"]["shading"] == "lambert"
    out = tmp_path / "teacher.json"
    argv = ["-q", "probe", "--data", data, "--teacher-cache", str(tmp_path / "train")]
    argv += ["--test-cache", str(tmp_path / "test"), "--seeds", "1", "--folds", "2", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert "test-split accuracy" in report["protocol"] and 0 <= report["accuracy"]["mean"] <= 1
