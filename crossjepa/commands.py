"""What each `crossjepa` subcommand does, given its parsed arguments. Heavy imports stay inside the functions
so `crossjepa --help` is instant."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("crossjepa")


def run_demo(args) -> None:
    from .demo import run_demo as demo

    demo(
        Path(args.out),
        num_objects=args.objects,
        steps=args.steps,
        device=args.device,
        progress=not args.quiet,
        seeds=args.seeds,
        test_objects=args.test_objects,
    )


def run_render(args) -> None:
    import torch

    from .data import open_dataset
    from .render import render_points, save_view_grid, sphere_poses

    if args.objects < 1 or args.views < 1:
        raise ValueError("--objects/--views: expected positive numbers")
    ds = open_dataset(args.data, split="train", num_points=args.num_points)
    items = [ds[i] for i in range(min(args.objects, len(ds)))]
    views = render_points(
        torch.stack([it["points"] for it in items]), sphere_poses(args.views), image_size=args.image_size
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = ds.classes
    titles = [names[it["label"]] if names and it["label"] >= 0 else f"object {i}" for i, it in enumerate(items)]
    path = save_view_grid(views.image, out / "view_grid.png", titles=titles)
    print(f"wrote {path}")


def run_cache(args) -> None:
    from .teacher import verify_cache

    if args.verify:
        verify_cache(args.verify)
        print(f"{args.verify}: all chunk checksums match")
        return
    if not args.data or not args.out:
        raise ValueError("--data and --out are required to build a cache (or use --verify DIR)")
    from .device import resolve_device
    from .train.distributed import close_distributed, init_distributed, rank_device

    device = resolve_device(args.device)
    # Under torchrun every process builds its share of the chunks; the coordination needs only gloo.
    dist_info = init_distributed(device, backend="gloo")
    try:
        path = _build_cache(args, rank_device(device, dist_info))
    finally:
        close_distributed(dist_info)
    if dist_info.is_main:
        print(f"cache ready: {path}")


def _build_cache(args, device):
    from .data import open_dataset
    from .teacher import DEFAULT_TEACHER, RenderedViews, build_cache, load_teacher

    dataset = open_dataset(args.data, split=args.split, num_points=args.num_points)
    size = {"image_size": args.image_size} if args.image_size else {}  # default: load_teacher's (224)
    teacher = load_teacher(
        args.teacher or DEFAULT_TEACHER,
        weights=args.teacher_weights,
        random_init=args.teacher_random_init,
        pooling=args.pooling,
        device=device,
        **size,
    )
    if args.views_dir:
        from .data.views_on_disk import ViewsOnDisk

        view_source = ViewsOnDisk(args.views_dir, dataset, image_size=teacher.image_size)
    else:
        view_source = RenderedViews(
            dataset,
            args.views,
            teacher.image_size,
            shading=args.shading,
            point_radius=args.point_radius,
            device=teacher.device,
        )
    return build_cache(
        dataset,
        args.out,
        teacher,
        num_views=args.views,
        view_source=view_source,
        batch_size=args.batch_size,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )


def run_pretrain(args) -> None:
    from .config_flags import config_from_args
    from .train.config import TrainConfig
    from .train.pretrain import pretrain

    cfg = config_from_args(TrainConfig, args)
    if not Path(cfg.cache).is_dir():
        raise ValueError(f"--cache {cfg.cache}: not a directory (build it with `crossjepa cache`)")
    path = pretrain(cfg, resume=args.resume, progress=not args.quiet)
    print(f"final weights: {path}")


def run_probe(args) -> None:
    from .data.carve import UNSEEN_FILE
    from .eval.probe_run import probe_checkpoint, probe_teacher_cache

    if args.test_cache and not args.teacher_cache:
        raise ValueError("--test-cache: expected only together with --teacher-cache")
    carved = args.checkpoint and Path(args.checkpoint).parent / UNSEEN_FILE
    if carved and not args.unseen and carved.is_file():
        log.warning(
            "%s: its pretraining kept the objects in %s out; without --unseen %s this probe fits and "
            "scores on objects the encoder trained on",
            args.checkpoint,
            carved,
            carved,
        )
    if args.teacher_cache:
        report = probe_teacher_cache(
            args.data,
            args.teacher_cache,
            test_cache=args.test_cache,
            unseen=args.unseen,
            seeds=args.seeds,
            folds=args.folds,
            solver=args.solver,
            device=args.device,
        )
    else:
        report = probe_checkpoint(
            args.data,
            checkpoint=args.checkpoint,
            random_init=args.random_init,
            preset=args.preset,
            seeds=args.seeds,
            folds=args.folds,
            num_points=args.num_points,
            device=args.device,
            unseen=args.unseen,
            progress=not args.quiet,
            solver=args.solver,
        )
    from .atomic import write_json

    write_json(Path(args.out), report)
    acc = report["accuracy"]
    print(
        f"{report['protocol']}: accuracy {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} % "
        f"over {len(acc['per_seed'])} seeds -> {args.out}"
    )


def run_unseen(args) -> None:
    from .atomic import write_json
    from .data import open_dataset
    from .data.carve import carve_unseen

    if args.seed < 0:
        raise ValueError(f"--seed: expected an int >= 0, got {args.seed}")
    record = carve_unseen(open_dataset(args.data, split="train"), args.fraction, args.seed, name="--fraction")
    write_json(Path(args.out), record)
    print(f"{record['num_unseen']} unseen objects of {record['dataset']['num_objects']} -> {args.out}")


def _print_accuracy(report: dict, what: str, out: str) -> None:
    acc = report["accuracy"]
    print(
        f"{report['protocol']}: {what} {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} % "
        f"-> {Path(out) / 'report.json'}"
    )


def run_finetune(args) -> None:
    from .config_flags import config_from_args
    from .eval.finetune_config import FinetuneConfig
    from .eval.finetune_run import run_finetune as finetune

    cfg = config_from_args(FinetuneConfig, args)
    report = finetune(cfg, resume=args.resume, progress=not args.quiet)
    _print_accuracy(report, "test accuracy", cfg.out)
    if report["vote"]:
        vote = report["vote"]
        print(f"with {vote['copies']}-copy test-time voting: {100 * vote['mean']:.2f} +- {100 * vote['std']:.2f} %")


def run_fewshot(args) -> None:
    from .config_flags import config_from_args
    from .eval.fewshot import run_fewshot as fewshot
    from .eval.finetune_config import FewshotConfig

    cfg = config_from_args(FewshotConfig, args)
    _print_accuracy(fewshot(cfg, resume=args.resume, progress=not args.quiet), "accuracy", cfg.out)


def run_embed(args) -> None:
    from .eval.embed import run_embed as embed

    paths = embed(
        args.data,
        args.checkpoint,
        args.out,
        split=args.split,
        tokens=args.tokens,
        num_points=args.num_points,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
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
