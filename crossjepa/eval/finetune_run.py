"""`crossjepa finetune`: per seed, carve a stratified validation part from the training split, fine-tune
encoder + head with the epoch chosen on that validation part only, then score the test split once.

Sources without a test split (e.g. the ModelNet10 training split alone) get a stratified, seeded test part
carved from the training split first; the report's protocol says so. Layout of OUT: config.yaml, report.json,
training_curve.png, and per seed seed_<s>/ (checkpoints/, metrics.jsonl, classifier.safetensors, result.json).
With `resume`, finished seeds are read back and an interrupted one continues from its latest checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from ..atomic import atomic_target, write_json, write_text
from ..config_io import dump_yaml
from ..data import contract, open_dataset
from ..data.carve import stratified_split
from ..data.subset import Subset
from ..device import resolve_device
from ..train.checkpoint import save_weights
from .classifier import EncoderSource, PointClassifier
from .config import FinetuneConfig
from .finetune import accuracy, eval_loader, fit, vote_accuracy
from .probe_run import carve, open_test_split


def protocol(cfg: FinetuneConfig, has_test: bool) -> str:
    val = f"a stratified {cfg.val_fraction:g} validation part"
    labels = "" if cfg.label_fraction == 1 else f"; labels of a stratified {cfg.label_fraction:g} of the training part"
    if cfg.unseen:
        where = (
            f"test part: the unseen objects of {cfg.unseen} (kept out of pretraining), scored once per seed; "
            f"epoch chosen on {val} of the other objects (seeded)"
        )
    elif has_test:
        where = f"epoch chosen on {val} of the train split (seeded); test split scored once per seed"
    else:
        where = (
            f"no test split: a stratified {cfg.test_fraction:g} test part carved from the train split, "
            f"epoch chosen on {val} of the rest (seeded); carved test part scored once per seed"
        )
    return f"fine-tune encoder + head, {cfg.train.epochs} epochs; {where}{labels}; {cfg.seeds} seeds"


def summary(values) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "per_seed": [float(v) for v in a]}


def num_classes(dataset, labels: np.ndarray) -> int:
    classes = contract.classes(dataset)
    count = len(classes) if classes else int(labels.max()) + 1
    if count < 2:
        raise ValueError(f"--data: expected labelled objects of at least two classes, got {count}")
    return count


def check_resume_config(path: Path, cfg) -> None:
    """A resumed run must have the settings it was started with; names the first that differs."""
    if not path.is_file():
        return
    old, new = yaml.safe_load(path.read_text()), yaml.safe_load(dump_yaml(cfg))

    def first_difference(a, b, prefix=""):
        for key in sorted(set(a) | set(b)):
            x, y = a.get(key), b.get(key)
            if isinstance(x, dict) and isinstance(y, dict):
                found = first_difference(x, y, f"{prefix}{key}.")
                if found:
                    return found
            elif x != y:
                return f"{prefix}{key}"
        return None

    key = first_difference(old, new)
    if key:
        raise ValueError(
            f"--resume: {key} differs from the run in {path.parent} (see its config.yaml); "
            f"resume with the same settings or use a new --out"
        )


def run_finetune(cfg: FinetuneConfig, resume: bool = False, progress: bool = True) -> dict:
    if not cfg.data:
        raise ValueError("--data: expected a dataset spec (a path or synthetic:N)")
    device = resolve_device(cfg.device)
    source = EncoderSource(cfg.checkpoint, cfg.random_init, cfg.preset)
    num_points = cfg.train.num_points or source.num_points
    train_full = open_dataset(cfg.data, split="train", num_points=num_points)
    labels = contract.dataset_labels(train_full)
    if cfg.unseen:  # the test part is the carve pretraining never saw, whatever splits the source has
        rest, held, _ = carve(train_full, cfg.unseen)
        test_split, train_ids = Subset(train_full, held), rest
    else:
        test_split, train_ids = open_test_split(cfg.data, num_points=num_points), None
    classes = num_classes(train_full, labels)
    augment = cfg.train.augment.resolve(contract.is_scanned(train_full))
    out = Path(cfg.out)
    if resume:
        check_resume_config(out / "config.yaml", cfg)
    write_text(out / "config.yaml", dump_yaml(cfg))

    results = []
    for seed in range(cfg.seeds):
        done = out / f"seed_{seed}" / "result.json"
        if resume and done.is_file():
            results.append(json.loads(done.read_text()))
            continue
        results.append(
            _run_seed(
                cfg,
                seed,
                source,
                train_full,
                labels,
                train_ids,
                test_split,
                classes,
                num_points,
                augment,
                device,
                resume,
                progress,
            )
        )
        write_json(done, results[-1])

    report = {
        "protocol": protocol(cfg, test_split is not None),
        "encoder": source.name,
        "data": cfg.data,
        "accuracy": summary([r["test_accuracy"] for r in results]),
        "val_accuracy": [r["val_accuracy"] for r in results],
        "best_epoch": [r["best_epoch"] for r in results],
        "splits": [r["splits"] for r in results],
        "classes": contract.classes(train_full),
        "vote": None,
        "config": yaml.safe_load(dump_yaml(cfg)),
    }
    if cfg.vote:
        report["vote"] = {
            **summary([r["vote_accuracy"] for r in results]),
            "copies": cfg.vote,
            "protocol": f"the selected model once per seed, logits averaged over {cfg.vote} "
            "augmented copies of each test object (not a best-of-many)",
        }
    write_json(out / "report.json", report)
    plot_training_curves(results, out / "training_curve.png")
    return report


def _run_seed(
    cfg, seed, source, train_full, labels, train_ids, test_split, classes, num_points, augment, device, resume, progress
) -> dict:
    rest = np.arange(len(labels)) if train_ids is None else train_ids
    test_set = test_split
    if test_split is None:
        rest, held = stratified_split(labels, cfg.test_fraction, seed, "test_fraction")
        test_set = Subset(train_full, held)
    train_part, val_part = stratified_split(labels[rest], cfg.val_fraction, seed, "val_fraction")
    if cfg.label_fraction < 1:  # fewer labels, same validation part: the label-efficiency curve
        _, labelled = stratified_split(labels[rest[train_part]], cfg.label_fraction, seed, "label_fraction")
        train_part = train_part[labelled]
    train_set, val_set = Subset(train_full, rest[train_part]), Subset(train_full, rest[val_part])

    torch.manual_seed(seed)
    s = cfg.train
    model = PointClassifier(source(), classes, s.head_hidden, s.head_dropout).to(device)
    seed_dir = Path(cfg.out) / f"seed_{seed}"
    fitted = fit(
        model,
        train_set,
        val_set,
        s,
        out=seed_dir,
        seed=seed,
        device=device,
        num_points=num_points,
        augment=augment,
        resume=resume,
        progress=progress,
        desc=f"fine-tune seed {seed}",
    )
    # The test data enters here, after selection, once.
    result = {
        "seed": seed,
        "test_accuracy": accuracy(model, eval_loader(test_set, s, num_points, device), s.amp),
        **fitted,
        "splits": {"train": len(train_set), "val": len(val_set), "test": len(test_set)},
    }
    if cfg.vote:
        result["vote_accuracy"] = vote_accuracy(model, test_set, s, num_points, device, augment, cfg.vote, seed)
    save_weights(model, seed_dir / "classifier.safetensors")
    return result


def plot_training_curves(results: list[dict], out_png: Path) -> Path:
    """Training loss and validation accuracy against epoch, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=120)
    for r in results:
        epochs = [h["epoch"] for h in r["history"]]
        loss_ax.plot(epochs, [h["loss"] for h in r["history"]], label=f"seed {r['seed']}")
        acc_ax.plot(epochs, [h["val_accuracy"] for h in r["history"]], label=f"seed {r['seed']}")
        acc_ax.scatter([r["best_epoch"]], [r["val_accuracy"]], marker="*", s=60)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="fine-tuning loss")
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy", title="validation (* = selected epoch)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_target(out_png) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out_png
