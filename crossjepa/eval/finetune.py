"""Training an encoder + classification head on labelled clouds (`fit`) and scoring it (`accuracy`,
`vote_accuracy`).

`fit` sees training data and, for model selection, validation data only: after every epoch the model is scored
on the validation set and the best epoch's weights (ties -> the earliest) are kept. Without a validation set the
schedule is fixed and the last weights are kept (few-shot episodes). Test data never enters `fit`; callers score
it once, afterwards. Checkpoints (optimizer, scheduler, RNG, history, best weights) go to OUT/checkpoints every
`checkpoint_every` epochs, so a killed run continues with `resume=True` (bit-identical on CPU).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..atomic import write_text
from ..data import make_loader
from ..data.transforms import AugmentConfig
from ..train.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ..train.optim import build_optimizer, load_optimizer_state
from .classifier import PointClassifier, layerwise_groups
from .config import ClassifierTraining


def eval_loader(
    dataset, s: ClassifierTraining, num_points: int, device, augment: AugmentConfig | None = None, seed: int = 0
):
    """Batches of `dataset` in order; augmented only for voting."""
    return make_loader(
        dataset,
        s.batch_size,
        shuffle=False,
        augment=augment or False,
        num_points=num_points,
        seed=seed,
        device=device,
        num_workers=s.num_workers,
    )


@torch.no_grad()
def predict(model: PointClassifier, loader, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (logits (N, classes) float32, labels (N,)) on the CPU, in the loader's order; eval mode."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for batch in loader:
            points = batch["points"]
            with torch.autocast(points.device.type, dtype=torch.bfloat16, enabled=amp and points.is_cuda):
                logits.append(model(points).float().cpu())
            labels.append(batch["label"].cpu())
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def accuracy(model: PointClassifier, loader, amp: bool = True) -> float:
    logits, labels = predict(model, loader, amp)
    return float((logits.argmax(1) == labels).double().mean())


def vote_accuracy(
    model: PointClassifier,
    dataset,
    s: ClassifierTraining,
    num_points: int,
    device,
    augment: AugmentConfig,
    copies: int,
    seed: int,
) -> float:
    """Accuracy of the logits averaged over `copies` augmented copies of every object: one evaluation of one
    model (test-time augmentation), not a choice among several evaluations."""
    total, labels = None, None
    for k in range(copies):
        logits, labels = predict(model, eval_loader(dataset, s, num_points, device, augment, seed * copies + k), s.amp)
        total = logits if total is None else total + logits
    return float((total.argmax(1) == labels).double().mean())


def _train_epoch(model, loader, opt, sched, s: ClassifierTraining, device) -> tuple[float, float]:
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    params = [p for p in model.parameters() if p.requires_grad]
    for batch in loader:
        points, labels = batch["points"], batch["label"]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.amp and device.type == "cuda"):
            logits = model(points)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=s.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, s.optim.grad_clip)
        opt.step()
        sched.step()
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    return loss_sum.item() / seen, correct.item() / seen  # one host sync per epoch


def fit(
    model: PointClassifier,
    train_set,
    val_set,
    s: ClassifierTraining,
    *,
    out: str | Path,
    seed: int,
    device: torch.device,
    num_points: int,
    augment: AugmentConfig,
    resume: bool = False,
    progress: bool = True,
    desc: str = "fine-tune",
) -> dict:
    """Train `model` in place; selection on `val_set` only (None: fixed schedule, last weights).

    -> {"best_epoch", "val_accuracy" (None without val_set), "history": [{"epoch", "loss", "train_accuracy",
    "lr", "val_accuracy"?}, ...]}. Per-epoch records also go to OUT/metrics.jsonl."""
    out = Path(out)
    train_loader = make_loader(
        train_set,
        min(s.batch_size, len(train_set)),
        shuffle=True,
        augment=augment,
        num_points=num_points,
        seed=seed,
        drop_last=True,
        device=device,
        num_workers=s.num_workers,
    )
    val_loader = None if val_set is None else eval_loader(val_set, s, num_points, device)
    opt, sched = build_optimizer(
        model,
        s,
        s.epochs * len(train_loader),
        device,
        groups=layerwise_groups(model, s.optim.lr, s.optim.weight_decay, s.optim.layer_decay),
    )
    epoch, history, best = 0, [], {"epoch": None, "val_accuracy": None, "weights": None}
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, model)
        load_optimizer_state(opt, state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        epoch, history, best = state["epoch"], state["history"], state["best"]
    elif (out / "checkpoints").exists():  # a fresh run must not inherit (or be pruned against) old ones
        shutil.rmtree(out / "checkpoints")

    bar = tqdm(total=s.epochs, initial=epoch, desc=desc, unit="epoch", disable=not progress, dynamic_ncols=True)
    while epoch < s.epochs:
        train_loader.set_epoch(epoch)
        loss, train_acc = _train_epoch(model, train_loader, opt, sched, s, device)
        epoch += 1
        record = {"epoch": epoch, "loss": loss, "train_accuracy": train_acc, "lr": sched.get_last_lr()[-1]}
        if val_loader is not None:
            record["val_accuracy"] = accuracy(model, val_loader, s.amp)
            if best["val_accuracy"] is None or record["val_accuracy"] > best["val_accuracy"]:
                best = {
                    "epoch": epoch,
                    "val_accuracy": record["val_accuracy"],
                    "weights": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                }
        history.append(record)
        write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        if epoch % s.checkpoint_every == 0 or epoch == s.epochs:
            save_checkpoint(
                out,
                epoch,
                model,
                {
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": rng_state(),
                    "epoch": epoch,
                    "history": history,
                    "best": best,
                },
            )
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("loss", "val_accuracy")})
    bar.close()
    if best["weights"] is not None:
        model.load_state_dict(best["weights"])
    return {
        "best_epoch": best["epoch"] if val_set is not None else s.epochs,
        "val_accuracy": best["val_accuracy"],
        "history": history,
    }
