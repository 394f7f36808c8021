"""What each `crossjepa` subcommand does, given its parsed arguments. Heavy imports stay inside the functions
so `crossjepa --help` is instant."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("crossjepa")


def run_demo(args) -> None:
    from .demo import run_demo as demo

    demo(Path(args.out), num_objects=args.objects, steps=args.steps, device=args.device,
         progress=not args.quiet, seeds=args.seeds, test_objects=args.test_objects)


def run_render(args) -> None:
    import torch

    from .data import open_dataset
    from .render import render_points, save_view_grid, sphere_poses

    if args.objects < 1 or args.views < 1:
        raise ValueError("--objects/--views: expected positive numbers")
    ds = open_dataset(args.data, split="train", num_points=args.num_points)
    items = [ds[i] for i in range(min(args.objects, len(ds)))]
    views = render_points(torch.stack([it["points"] for it in items]), sphere_poses(args.views),
                          image_size=args.image_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = ds.classes
    titles = [names[it["label"]] if names and it["label"] >= 0 else f"object {i}" for i, it in enumerate(items)]
    path = save_view_grid(views.image, out / "view_grid.png", titles=titles)
    print(f"wrote {path}")


def run_cache(args) -> None:
    from .teacher import DEFAULT_TEACHER, build_cache, load_teacher, verify_cache

    if args.verify:
        verify_cache(args.verify)
        print(f"{args.verify}: all chunk checksums match")
        return
    if not args.data or not args.out:
        raise ValueError("--data and --out are required to build a cache (or use --verify DIR)")
    from .data import open_dataset
    from .device import resolve_device

    device = resolve_device(args.device)
    dataset = open_dataset(args.data, split="train", num_points=args.num_points)
    size = {"image_size": args.image_size} if args.image_size else {}  # default: load_teacher's (224)
    teacher = load_teacher(args.teacher or DEFAULT_TEACHER, weights=args.teacher_weights,
                           random_init=args.teacher_random_init, pooling=args.pooling, device=device, **size)
    view_source = None
    if args.views_dir:
        from .data.views_on_disk import ViewsOnDisk

        view_source = ViewsOnDisk(args.views_dir, dataset, image_size=teacher.image_size)
    path = build_cache(dataset, args.out, teacher, num_views=args.views, view_source=view_source,
                       batch_size=args.batch_size, resume=args.resume, overwrite=args.overwrite,
                       progress=not args.quiet)
    print(f"cache ready: {path}")


def run_pretrain(args) -> None:
    from .config_io import apply_overrides, load_yaml
    from .train.config import TrainConfig
    from .train.pretrain import pretrain

    cfg = load_yaml(TrainConfig, args.config) if args.config else TrainConfig()
    flags = {"data": args.data, "cache": args.cache, "out": args.out, "preset": args.preset,
             "max_steps": args.max_steps, "epochs": args.epochs, "batch_size": args.batch_size,
             "views_per_object": args.views_per_object, "optim.lr": args.lr,
             "checkpoint_every": args.checkpoint_every, "seed": args.seed, "device": args.device,
             "loader": args.loader, "num_points": args.num_points}
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None] + list(args.set)
    cfg = apply_overrides(cfg, overrides)
    if args.model_set:
        cfg = apply_overrides(cfg, [f"model_overrides={json.dumps(cfg.model_overrides + args.model_set)}"])
    if not Path(cfg.cache).is_dir():
        raise ValueError(f"--cache {cfg.cache}: not a directory (build it with `crossjepa cache`)")
    path = pretrain(cfg, resume=args.resume, progress=not args.quiet)
    print(f"final weights: {path}")


def run_probe(args) -> None:
    from .eval.probe_run import probe_checkpoint, probe_teacher_cache

    if args.test_cache and not args.teacher_cache:
        raise ValueError("--test-cache: expected only together with --teacher-cache")
    if args.teacher_cache:
        report = probe_teacher_cache(args.data, args.teacher_cache, test_cache=args.test_cache, seeds=args.seeds,
                                     folds=args.folds, solver=args.solver, device=args.device)
    else:
        report = probe_checkpoint(args.data, checkpoint=args.checkpoint, random_init=args.random_init,
                                  preset=args.preset, seeds=args.seeds, folds=args.folds,
                                  num_points=args.num_points, device=args.device, progress=not args.quiet,
                                  solver=args.solver)
    from .atomic import write_json

    write_json(Path(args.out), report)
    acc = report["accuracy"]
    print(f"{report['protocol']}: accuracy {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} % "
          f"over {len(acc['per_seed'])} seeds -> {args.out}")


def _eval_config(cls, args, extra: dict):
    """The config of finetune / fewshot: YAML, then the flags given, then --set overrides."""
    from .config_io import apply_overrides, load_yaml

    cfg = load_yaml(cls, args.config) if args.config else cls()
    flags = {"data": args.data, "out": args.out, "checkpoint": args.checkpoint, "preset": args.preset,
             "random_init": args.random_init or None, "device": args.device, "train.epochs": args.epochs,
             "train.batch_size": args.batch_size, "train.optim.lr": args.lr, **extra}
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None] + list(args.set)
    return apply_overrides(cfg, overrides)


def run_finetune(args) -> None:
    from .eval.finetune_config import FinetuneConfig
    from .eval.finetune_run import run_finetune as finetune

    cfg = _eval_config(FinetuneConfig, args, {"seeds": args.seeds, "val_fraction": args.val_fraction,
                                              "vote": args.vote})
    report = finetune(cfg, resume=args.resume, progress=not args.quiet)
    acc = report["accuracy"]
    print(f"{report['protocol']}: test accuracy {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} % "
          f"-> {Path(cfg.out) / 'report.json'}")
    if report["vote"]:
        vote = report["vote"]
        print(f"with {vote['copies']}-copy test-time voting: {100 * vote['mean']:.2f} +- {100 * vote['std']:.2f} %")


def run_fewshot(args) -> None:
    from .eval.fewshot import run_fewshot as fewshot
    from .eval.finetune_config import FewshotConfig

    cfg = _eval_config(FewshotConfig, args, {"way": args.way, "shot": args.shot, "folds": args.folds,
                                             "query": args.query, "head": args.head, "seed": args.seed})
    report = fewshot(cfg, resume=args.resume, progress=not args.quiet)
    acc = report["accuracy"]
    print(f"{report['protocol']}: accuracy {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} % "
          f"-> {Path(cfg.out) / 'report.json'}")


def run_embed(args) -> None:
    from .eval.embed import run_embed as embed

    paths = embed(args.data, args.checkpoint, args.out, split=args.split, tokens=args.tokens,
                  num_points=args.num_points, batch_size=args.batch_size, seed=args.seed, device=args.device,
                  progress=not args.quiet)
    print(f"wrote {paths['features']} (labels: {paths['labels']}, names: {paths['meta']})")


def run_pack(args) -> None:
    from .data.packing import pack

    path = pack(args.src, args.out, split=args.split, num_points=args.num_points)
    print(f"packed: {path}")


def run_bench(args) -> None:
    from .perf.bench import run_bench_command

    run_bench_command(args)


def run_profile(args) -> None:
    from .perf.profile import run_profile_command

    run_profile_command(args)
