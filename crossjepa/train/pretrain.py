"""The CrossJEPA pretraining loop: points -> encoder (once per object) -> predictor (once per view) vs cached
teacher embeddings. Resumable bit-exactly on CPU, runnable under torchrun.

Between log intervals the loop never reads the device: each batch arrives with its teacher targets (read with
its points where the loader builds the batch, data/targets.py), and the step keeps its statistics and
non-finite guard on the device. The attention backends the model got are written to runtime.json after the
first step."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import write_json, write_text
from ..config_io import apply_overrides, dump_yaml
from ..data import make_loader, open_dataset
from ..data.carve import UNSEEN_FILE, carve_unseen
from ..data.subset import Subset
from ..data.targets import CachedTargets
from ..data.transforms import AugmentConfig, rotate_poses
from ..device import resolve_device
from ..kernels import dispatch_record
from ..models import build
from ..models.config import preset_config
from ..teacher import open_cache
from .checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, save_weights, set_rng_state
from .config import TrainConfig
from .distributed import DistInfo, barrier, close_distributed, init_distributed, rank_device
from .heldout import heldout_scores, split_heldout
from .optim import build_optimizer, load_optimizer_state
from .plots import plot_loss_curve
from .step import TrainStep

log = logging.getLogger("crossjepa.pretrain")


def build_model(cfg: TrainConfig, teacher_dim: int) -> torch.nn.Module:
    config = apply_overrides(preset_config(cfg.preset, teacher_dim), cfg.model_overrides)
    return build(config=config)


def _truncate_metrics(path: Path, step: int) -> None:
    """After a resume, drop lines logged past the checkpoint (they are about to be recomputed)."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        write_text(path, "".join(ln + "\n" for ln in keep))


def pretrain(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    device = resolve_device(cfg.device)
    dist_info = init_distributed(device)
    device = rank_device(device, dist_info)
    try:
        return _pretrain(cfg, device, dist_info, resume, progress)
    finally:
        close_distributed(dist_info)


def _pretrain(cfg: TrainConfig, device: torch.device, dist_info: DistInfo, resume: bool, progress: bool) -> Path:
    out = Path(cfg.out)
    if dist_info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.batch_size % dist_info.world_size:
        raise ValueError(
            f"batch_size: {cfg.batch_size} must be divisible by the number of processes ({dist_info.world_size})"
        )
    dataset = open_dataset(cfg.data, split="train")
    cache = open_cache(cfg.cache)
    try:
        cache.check_dataset(dataset)
    except ValueError as err:
        raise ValueError(f"--cache: {err} (build the cache from --data {cfg.data})") from None

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, teacher_dim=cache.dim).to(device)
    if dist_info.is_main:
        from ..models import describe

        log.info("model: %s", describe(model))
        write_text(out / "config.yaml", dump_yaml(cfg))

    unseen = _unseen_objects(cfg, dataset, out, dist_info)
    train_ids, heldout_ids = split_heldout(len(dataset), cfg.heldout_fraction, cfg.seed, unseen)
    if cfg.batch_size > len(train_ids):
        raise ValueError(f"batch_size: {cfg.batch_size} is larger than the training objects ({len(train_ids)})")
    # Each rank takes its share of every global batch; "index" numbers the training objects, and the targets
    # map it back to the cache's numbering where the batch is built, so its targets come with it.
    targets = CachedTargets(cache, cfg.views_per_object, train_ids, histograms=model.config.condition.use_histogram)
    loader = make_loader(
        Subset(dataset, train_ids),
        cfg.batch_size // dist_info.world_size,
        backend=cfg.loader,
        shuffle=True,
        augment=cfg.augment and AugmentConfig(rotation=cfg.rotation),
        num_points=cfg.num_points or model.config.tokenizer.num_points,
        seed=cfg.seed,
        drop_last=True,
        device=device,
        num_workers=cfg.num_workers,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        targets=targets,
    )
    steps_per_epoch = len(loader)
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    if total_steps < 1:
        raise ValueError(f"max_steps/epochs: expected at least one step, got {total_steps}")

    opt, sched = build_optimizer(model, cfg, total_steps, device)
    mean = torch.as_tensor(cache.target_mean, dtype=torch.float32, device=device)
    std = torch.as_tensor(cache.target_std, dtype=torch.float32, device=device)
    train_model = model
    if dist_info.enabled:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    step = 0
    metrics_path, heldout_path = out / "metrics.jsonl", out / "heldout.jsonl"
    ckpt = latest_checkpoint(out) if resume else None
    if resume and ckpt is None and dist_info.is_main:
        log.warning("--resume: no checkpoint in %s, starting from scratch", out)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model)
        load_optimizer_state(opt, state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step = state["step"]
        if dist_info.is_main:
            _truncate_metrics(metrics_path, step)
            _truncate_metrics(heldout_path, step)
            log.info("resumed from %s (step %d)", ckpt, step)
    elif dist_info.is_main:
        metrics_path.unlink(missing_ok=True)
        heldout_path.unlink(missing_ok=True)

    train_step = TrainStep(
        train_model, opt, sched, loss=cfg.loss, grad_clip=cfg.optim.grad_clip, amp=cfg.amp, device=device
    )
    train_step.step = step
    bar = tqdm(
        total=total_steps * cfg.batch_size,
        initial=step * cfg.batch_size,
        unit="obj",
        unit_scale=True,
        disable=not (progress and dist_info.is_main),
        desc="pretrain",
        dynamic_ncols=True,
    )
    t_log = time.perf_counter()
    start = step
    train_model.train()
    while step < total_steps:
        epoch, skip = divmod(step, steps_per_epoch)
        loader.set_epoch(epoch, first_batch=skip)  # a resumed epoch starts at its next batch, nothing is re-read
        for batch in loader:  # on `device`, with the teacher targets read on the host (CachedTargets)
            poses = rotate_poses(batch["poses"], batch["rotation"])  # cameras turned with the points
            train_step(batch["points"], batch["target"].float(), poses, batch.get("histograms"), mean, std)
            step += 1
            if step == start + 1:  # every attention shape has been dispatched once
                _record_dispatch(out, dist_info)
            bar.update(cfg.batch_size)
            log_now = step % cfg.log_every == 0 or step == total_steps
            checkpoint_now = step % cfg.checkpoint_every == 0 or step == total_steps
            if log_now or checkpoint_now:
                stats = train_step.stats()  # the host sync: once per log interval and before every checkpoint
                if stats.nonfinite and cfg.nonfinite == "stop":
                    raise FloatingPointError(_nonfinite_message(stats, out))
            if log_now:
                _log_metrics(metrics_path, step, epoch, stats, sched, cfg, t_log, bar, dist_info)
                train_step.reset()
                t_log = time.perf_counter()
            if dist_info.is_main and len(heldout_ids) and (step % steps_per_epoch == 0 or step == total_steps):
                _log_heldout(heldout_path, step, epoch, model, dataset, heldout_ids, cache, mean, std, bar)
            if checkpoint_now:
                _checkpoint(out, step, model, opt, sched, dist_info)
            if step >= total_steps:
                break
    bar.close()
    final = out / "model.safetensors"
    if dist_info.is_main:
        save_weights(model, final)
        plot_loss_curve(metrics_path, out / "loss_curve.png")
        log.info("final weights: %s", final)
    barrier(dist_info)
    return final


def _unseen_objects(cfg: TrainConfig, dataset, out: Path, dist_info: DistInfo) -> np.ndarray:
    """The objects pretraining never sees (none when unseen_fraction is 0); the main process lists them in
    OUT/unseen_objects.json for `crossjepa probe --unseen`."""
    path = out / UNSEEN_FILE
    if not cfg.unseen_fraction:
        if dist_info.is_main:
            path.unlink(missing_ok=True)  # an earlier run's carve in this folder would no longer be true
        return np.zeros(0, dtype=np.int64)
    record = carve_unseen(dataset, cfg.unseen_fraction, cfg.unseen_seed)
    if dist_info.is_main:
        write_json(path, record)
        log.info(
            "%d unseen objects (stratified %g, seed %d) kept out of pretraining: %s",
            record["num_unseen"],
            cfg.unseen_fraction,
            cfg.unseen_seed,
            path,
        )
    return np.asarray(record["objects"], dtype=np.int64)


def _nonfinite_message(stats, out: Path) -> str:
    last_good = latest_checkpoint(out)
    then = (
        f"the last good checkpoint is {last_good}: resume from it with --resume"
        if last_good
        else "no checkpoint was written before it: run again"
    )
    return (
        f"step {stats.first_nonfinite}: non-finite {stats.first_what} (NaN/Inf; {stats.nonfinite} such step(s) "
        f"since step {stats.first_step}), stopped before checkpointing it; {then} (e.g. with a lower --lr), "
        f"or skip such steps with --set nonfinite=skip"
    )


def _log_metrics(path, step, epoch, stats, sched, cfg, t_start, bar, dist_info) -> None:
    if not dist_info.is_main:
        return
    if stats.nonfinite:
        log.warning(
            "skipped %d step(s) with a non-finite loss or gradient (first: step %d, %s)",
            stats.nonfinite,
            stats.first_nonfinite,
            stats.first_what,
        )
    rate = stats.steps * cfg.batch_size / max(1e-9, time.perf_counter() - t_start)
    record = {
        "step": step,
        "epoch": epoch,
        "loss": stats.loss,
        "grad_norm": stats.grad_norm,
        "nonfinite_steps": stats.nonfinite,
        "lr": sched.get_last_lr()[0],
        "objects_per_s": rate,
    }
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    bar.set_postfix(loss=f"{stats.loss:.4f}")


def _log_heldout(path, step, epoch, model, dataset, ids, cache, mean, std, bar) -> None:
    # Own RNG state: a random FPS start must not shift the training streams (resume stays bit-exact).
    with torch.random.fork_rng(devices=[mean.device] if mean.device.type == "cuda" else []):
        scores = heldout_scores(model, dataset, ids, cache, mean, std, model.config.tokenizer.num_points)
    with open(path, "a") as f:
        f.write(json.dumps({"step": step, "epoch": epoch, "objects": len(ids), **scores}) + "\n")
    bar.set_postfix(heldout_r2=f"{scores['r2']:.3f}")


def _checkpoint(out, step, model, opt, sched, dist_info) -> None:
    # The views are drawn per batch from (seed, rank, epoch, batch): no generator state to save.
    if dist_info.is_main:
        save_checkpoint(
            out,
            step,
            model,
            {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state(), "step": step},
        )
    barrier(dist_info)


def _record_dispatch(out: Path, dist_info: DistInfo) -> None:
    """The attention backend each shape got (after a step, when every shape has been seen), beside
    config.yaml."""
    if dist_info.is_main:
        write_text(out / "runtime.json", json.dumps({"attention": dispatch_record()}, indent=2) + "\n")
