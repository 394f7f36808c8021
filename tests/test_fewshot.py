"""crossjepa fewshot: seeded episodes, support-only training and selection, the query set scored once."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from eval_shapes import Shapes

from crossjepa.cli import main
from crossjepa.config_io import apply_overrides
from crossjepa.eval import fewshot
from crossjepa.eval import probe as probe_module
from crossjepa.eval.config import FewshotConfig
from crossjepa.eval.fewshot import draw_episode, fold_files, run_fewshot

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = ["train.num_points=128", "train.num_workers=0", "train.batch_size=4"]


def write_folds(root, way: int, shot: int, query: int, folds: int):
    """ModelNet few-shot fold files {way}way_{shot}shot/{fold}.pkl holding easy shapes."""
    folder = root / f"{way}way_{shot}shot"
    folder.mkdir(parents=True)
    for fold in range(folds):
        support, queries = Shapes(way * shot, seed=10 + fold), Shapes(way * query, seed=100 + fold)
        content = {
            split: [(d.points[i].numpy(), int(d.labels[i]), None) for i in range(len(d))]
            for split, d in (("train", support), ("test", queries))
        }
        (folder / f"{fold}.pkl").write_bytes(pickle.dumps(content))
    return folder


def fewshot_config(tmp_path, data, head: str, *overrides, **fields) -> FewshotConfig:
    cfg = FewshotConfig(
        data=str(data), out=str(tmp_path / "fs"), random_init=True, preset="tiny", head=head, device="cpu", **fields
    )
    return apply_overrides(cfg, TOY + list(overrides))


def test_drawn_episodes_are_seeded_disjoint_and_relabelled():
    labels = np.arange(60) % 6
    draw = lambda seed: draw_episode(labels, None, 3, 4, 5, np.random.default_rng(seed))  # noqa: E731
    s_idx, s_lab, q_idx, q_lab = draw(0)
    assert all(np.array_equal(a, b) for a, b in zip(draw(0), (s_idx, s_lab, q_idx, q_lab)))
    assert not np.array_equal(draw(1)[0], s_idx)
    assert not set(s_idx) & set(q_idx)
    assert np.bincount(s_lab).tolist() == [4, 4, 4] and np.bincount(q_lab).tolist() == [5, 5, 5]
    for j in range(3):  # one original class per episode label, the same in support and query
        assert len(set(labels[s_idx[s_lab == j]]) | set(labels[q_idx[q_lab == j]])) == 1
    query_split = np.arange(30) % 6
    _, s_lab, q_idx, q_lab = draw_episode(labels, query_split, 3, 4, 5, np.random.default_rng(0))
    assert q_idx.max() < 30 and len(q_idx) == 15
    with pytest.raises(ValueError, match="way: expected at most 6"):
        draw_episode(labels, None, 7, 4, 5, np.random.default_rng(0))


def test_fold_files_are_found_from_a_file_a_fold_folder_or_its_parent(tmp_path):
    folder = write_folds(tmp_path, way=3, shot=2, query=1, folds=3)
    (folder / "10.pkl").write_bytes((folder / "0.pkl").read_bytes())
    expected = [folder / f"{i}.pkl" for i in (0, 1, 2, 10)]
    assert fold_files(folder, 3, 2) == expected and fold_files(tmp_path, 3, 2) == expected
    assert fold_files(folder / "1.pkl", 5, 10) == [folder / "1.pkl"]
    assert fold_files(tmp_path, 5, 10) is None


def test_linear_head_beats_chance_and_chooses_C_on_the_support_set_only(tmp_path, monkeypatch):
    write_folds(tmp_path, way=3, shot=4, query=6, folds=2)
    seen, real = [], probe_module.select_C

    def spy(x, y, *args):
        seen.append(np.asarray(y).copy())
        return real(x, y, *args)

    monkeypatch.setattr(probe_module, "select_C", spy)
    report = run_fewshot(fewshot_config(tmp_path, tmp_path, "linear", way=3, shot=4, folds=2), progress=False)
    assert report["accuracy"]["mean"] >= 0.6  # chance is 1/3
    assert len(report["accuracy"]["per_fold"]) == 2 and "C by 4-fold CV on the support set" in report["protocol"]
    assert len(seen) == 2 and all(np.bincount(y).tolist() == [4, 4, 4] for y in seen)  # support rows only


def test_finetune_head_trains_on_the_support_and_reads_the_query_once_after(tmp_path, monkeypatch):
    train, test = Shapes(30, seed=0), Shapes(30, seed=1)
    monkeypatch.setattr(fewshot, "open_dataset", lambda *a, **k: train)
    monkeypatch.setattr(fewshot, "open_test_split", lambda *a, **k: test)
    calls, real = [], fewshot.fit

    def spy(model, train_set, val_set, *args, **kwargs):
        before = dict(test.reads)
        result = real(model, train_set, val_set, *args, **kwargs)
        calls.append({"val_set": val_set, "support": len(train_set), "query_read": test.reads != before})
        return result

    monkeypatch.setattr(fewshot, "fit", spy)
    cfg = fewshot_config(tmp_path, "in-memory", "finetune", "train.epochs=1", way=3, shot=2, query=3, folds=2)
    report = run_fewshot(cfg, progress=False)
    assert [c["val_set"] for c in calls] == [None, None] and [c["support"] for c in calls] == [6, 6]
    assert not any(c["query_read"] for c in calls)
    assert sum(test.reads.values()) == 2 * 9  # each episode reads its 9 query objects once
    assert "fixed schedule, no model selection" in report["protocol"] and "drawn" in report["protocol"]


def test_unseen_episodes_draw_queries_from_the_carve_and_supports_from_the_rest(tmp_path, monkeypatch):
    from crossjepa.atomic import write_text
    from crossjepa.data.carve import carve_unseen

    train = Shapes(60, seed=0)
    train.fingerprint = lambda: "shapes-0"
    record = carve_unseen(train, 0.25, seed=1)
    write_text(tmp_path / "unseen.json", json.dumps(record))
    monkeypatch.setattr(fewshot, "open_dataset", lambda *a, **k: train)
    monkeypatch.setattr(fewshot, "open_test_split", lambda *a, **k: pytest.fail("the carve replaces the test split"))
    cfg = fewshot_config(
        tmp_path, "in-memory", "linear", way=3, shot=3, query=4, folds=3, unseen=str(tmp_path / "unseen.json")
    )
    held = set(record["objects"])
    for _, support, query, where in fewshot.episodes(cfg, 128):
        assert set(query.ids.tolist()) <= held and not set(support.ids.tolist()) & held
        assert len(support) == 9 and len(query) == 12 and "unseen objects" in where
        for j in range(3):  # an episode label names one original class in support and query alike
            assert len({int(train.labels[i]) for i in support.ids[support.labels == j]}) == 1
            assert {int(train.labels[i]) for i in support.ids[support.labels == j]} == {
                int(train.labels[i]) for i in query.ids[query.labels == j]
            }


def test_cli_fold_files_resume_drawn_episodes_and_errors(tmp_path, capsys):
    write_folds(tmp_path / "folds", way=3, shot=2, query=2, folds=2)
    out = tmp_path / "fs"
    argv = [
        "-q",
        "fewshot",
        "--data",
        str(tmp_path / "folds"),
        "--random-init",
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--way",
        "3",
        "--shot",
        "2",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]
    argv += [a for kv in TOY for a in ("--set", kv)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["accuracy"]["per_fold"]) == 2 and report["head"] == "finetune"
    assert [e["episode"] for e in report["episodes"]] == ["fold file 3way_2shot/0.pkl", "fold file 3way_2shot/1.pkl"]
    assert "accuracy" in capsys.readouterr().out
    assert main(argv + ["--resume"]) == 0
    assert json.loads((out / "report.json").read_text())["accuracy"] == report["accuracy"]

    assert (
        main(
            [
                "-q",
                "fewshot",
                "--data",
                "synthetic:36",
                "--random-init",
                "--preset",
                "tiny",
                "--out",
                str(tmp_path / "drawn"),
                "--way",
                "3",
                "--shot",
                "2",
                "--query",
                "2",
                "--folds",
                "2",
                "--head",
                "linear",
                "--device",
                "cpu",
                "--set",
                "train.num_points=64",
            ]
        )
        == 0
    )
    drawn = json.loads((tmp_path / "drawn" / "report.json").read_text())
    assert "query from the test split" in drawn["episodes"][0]["episode"]

    assert main(argv[: -len(TOY) * 2] + ["--folds", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "folds: expected at most 2" in err[0]
