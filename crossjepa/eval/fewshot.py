"""`crossjepa fewshot`: N-way K-shot episodes, mean +- std over folds.

Episodes come from the standard ModelNet40 few-shot folds (`{way}way_{shot}shot/{fold}.pkl`: support = its
"train" list, query = its "test" list) or are drawn, seeded, from any labelled dataset: `way` classes, `shot`
support objects each from the train split and `query` query objects each from the test split (from the rest of
the train split when there is none; with `unseen`, support from the objects outside the unseen-objects file and
query from the objects in it, which pretraining never saw). Per episode, either
- "finetune": a fresh encoder + head trained on the support set for a FIXED number of epochs (no model
  selection: with K shots there is no validation data to select on, and choosing by query accuracy is the known
  few-shot bug), the query set scored once with the last weights; or
- "linear": the linear-probe protocol on encoder features (C by CV on the support set only).
Finished episodes are recorded in OUT/episodes/fold_<f>.json, so `resume` skips them; an interrupted
fine-tuning episode continues from its checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ..atomic import write_json, write_text
from ..config_io import dump_yaml
from ..data import open_dataset
from ..data.contract import dataset_labels, is_scanned
from ..data.formats.fewshot import FOLD_DIR
from ..data.subset import Subset
from ..device import resolve_device
from .classifier import EncoderSource, PointClassifier
from .config import FewshotConfig
from .features import extract_features
from .finetune import accuracy, eval_loader, fit
from .finetune_run import check_resume_config
from .probe import linear_probe
from .probe_run import carve, open_test_split


def fold_files(path: Path, way: int, shot: int) -> list[Path] | None:
    """The fold files a path names (one .pkl, a `{way}way_{shot}shot` folder, or a folder holding one for
    this way/shot), sorted by fold number; None when the path is not few-shot folds."""
    if path.is_file() and path.suffix == ".pkl":
        return [path]
    if not path.is_dir():
        return None
    if not FOLD_DIR.match(path.name):
        matches = [path / f"{way}way_{shot}shot", path / f"{way}way{shot}shot"]
        path = next((m for m in matches if m.is_dir()), None)
        if path is None:
            return None
    numbered = [p for p in path.glob("*.pkl") if p.stem.isdigit()]
    return sorted(numbered, key=lambda p: int(p.stem)) or None


def draw_episode(
    train_labels: np.ndarray, query_labels: np.ndarray | None, way: int, shot: int, query: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> (support indices, support labels 0..way-1, query indices, query labels). Query indices point into the
    query split, or, when `query_labels` is None, into the train split (disjoint from the support)."""
    same = query_labels is None
    classes = np.unique(train_labels)
    need_train = shot + query if same else shot
    eligible = [
        c for c in classes if (train_labels == c).sum() >= need_train and (same or (query_labels == c).sum() >= query)
    ]
    if len(eligible) < way:
        raise ValueError(
            f"way: expected at most {len(eligible)} (classes with {need_train} train objects"
            f"{'' if same else f' and {query} test objects'}), got {way}"
        )
    chosen = rng.choice(eligible, size=way, replace=False)
    support, query_idx = [], []
    for c in chosen:
        pool = rng.permutation(np.flatnonzero(train_labels == c))
        support.append(pool[:shot])
        query_idx.append(
            pool[shot : shot + query] if same else rng.permutation(np.flatnonzero(query_labels == c))[:query]
        )
    s_lab, q_lab = (np.repeat(np.arange(way), [len(p) for p in parts]) for parts in (support, query_idx))
    return np.concatenate(support), s_lab, np.concatenate(query_idx), q_lab


def episodes(cfg: FewshotConfig, num_points: int):
    """Yields (fold, support set, query set, where they came from)."""
    files = fold_files(Path(cfg.data).expanduser(), cfg.way, cfg.shot)
    if files is not None:
        if cfg.folds > len(files):
            raise ValueError(f"folds: expected at most {len(files)} (fold files found for {cfg.data}), got {cfg.folds}")
        for fold, path in enumerate(files[: cfg.folds]):
            yield (
                fold,
                open_dataset(path, "train", num_points),
                open_dataset(path, "test", num_points),
                f"fold file {path.parent.name}/{path.name}",
            )
        return
    train = open_dataset(cfg.data, split="train", num_points=num_points)
    labels = dataset_labels(train)
    if cfg.unseen:  # support from the objects pretraining saw, query from the carve it never saw
        support_ids, query_ids, _ = carve(train, cfg.unseen)
        query_set, query_from = train, f"the unseen objects of {cfg.unseen}"
    else:
        support_ids, query_ids = np.arange(len(train)), None
        query_set = open_test_split(cfg.data, num_points=num_points)
        if query_set is not None:
            query_ids, query_from = np.arange(len(query_set)), "the test split"
        else:
            query_from = "the train split"
    query_labels = None if query_ids is None else dataset_labels(query_set)[query_ids]
    for fold in range(cfg.folds):
        rng = np.random.default_rng([cfg.seed, fold])
        s_idx, s_lab, q_idx, q_lab = draw_episode(labels[support_ids], query_labels, cfg.way, cfg.shot, cfg.query, rng)
        queries = Subset(train, support_ids[q_idx], q_lab)
        if query_ids is not None:
            queries = Subset(query_set, query_ids[q_idx], q_lab)
        yield (
            fold,
            Subset(train, support_ids[s_idx], s_lab),
            queries,
            f"drawn (seed {cfg.seed}, fold {fold}), query from {query_from}",
        )


def protocol(cfg: FewshotConfig, source: str) -> str:
    head = (
        f"fine-tune encoder + head for {cfg.train.epochs} epochs on the support set (fixed schedule, no model "
        "selection), query set scored once"
        if cfg.head == "finetune"
        else f"linear SVM on encoder features, C by {min(cfg.cv_folds, cfg.shot)}-fold CV on the support set only, "
        "query set scored once"
    )
    return f"{cfg.way}-way {cfg.shot}-shot, {cfg.folds} episodes ({source}); per episode: {head}"


def run_fewshot(cfg: FewshotConfig, resume: bool = False, progress: bool = True) -> dict:
    if not cfg.data:
        raise ValueError("--data: expected a dataset spec, a few-shot fold file or folder")
    if cfg.head == "linear" and cfg.shot < 2:
        raise ValueError(f"shot: the linear head picks C by CV on the support set and needs shot >= 2, got {cfg.shot}")
    device = resolve_device(cfg.device)
    source = EncoderSource(cfg.checkpoint, cfg.random_init, cfg.preset)
    num_points = cfg.train.num_points or source.num_points
    out = Path(cfg.out)
    if resume:
        check_resume_config(out / "config.yaml", cfg)
    write_text(out / "config.yaml", dump_yaml(cfg))

    results, origin = [], "fold files"
    bar = tqdm(total=cfg.folds, desc=f"{cfg.way}-way {cfg.shot}-shot", unit="episode", disable=not progress)
    for fold, support, query, where in episodes(cfg, num_points):
        origin = "fold files" if where.startswith("fold file") else "drawn"
        done = out / "episodes" / f"fold_{fold}.json"
        if resume and done.is_file():
            results.append(json.loads(done.read_text()))
        else:
            torch.manual_seed(cfg.seed * 1000 + fold)
            accuracy_ = _episode(cfg, fold, source(), support, query, num_points, device, resume)
            results.append(
                {"fold": fold, "accuracy": accuracy_, "episode": where, "support": len(support), "query": len(query)}
            )
            write_json(done, results[-1])
        bar.update(1)
        bar.set_postfix(acc=f"{np.mean([r['accuracy'] for r in results]):.3f}")
    bar.close()
    acc = np.asarray([r["accuracy"] for r in results], dtype=np.float64)
    report = {
        "protocol": protocol(cfg, origin),
        "encoder": source.name,
        "data": cfg.data,
        "way": cfg.way,
        "shot": cfg.shot,
        "head": cfg.head,
        "accuracy": {"mean": float(acc.mean()), "std": float(acc.std()), "per_fold": acc.tolist()},
        "episodes": results,
        "config": yaml.safe_load(dump_yaml(cfg)),
    }
    write_json(out / "report.json", report)
    return report


def _episode(cfg: FewshotConfig, fold: int, encoder, support, query, num_points, device, resume) -> float:
    """Query accuracy of one episode; the query set is touched once, after training."""
    s = cfg.train
    encoder = encoder.to(device)
    if cfg.head == "linear":
        kw = dict(num_points=num_points, seed=cfg.seed, progress=False, batch_size=s.batch_size)
        sx, sy = extract_features(encoder, support, **kw)
        qx, qy = extract_features(encoder, query, **kw)
        return linear_probe(sx, sy, qx, qy, seeds=(cfg.seed,), folds=min(cfg.cv_folds, cfg.shot))["accuracy"]["mean"]
    classes = int(dataset_labels(support).max()) + 1
    model = PointClassifier(encoder, max(classes, 2), s.head_hidden, s.head_dropout).to(device)
    fit(
        model,
        support,
        None,
        s,
        out=Path(cfg.out) / "episodes" / f"fold_{fold}",
        seed=cfg.seed + fold,
        device=device,
        num_points=num_points,
        augment=s.augment.resolve(is_scanned(support)),
        resume=resume,
        progress=False,
    )
    return accuracy(model, eval_loader(query, s, num_points, device), s.amp)
