"""What each `crossjepa` subcommand does, given its parsed arguments, and the settings of the commands that have
no module of their own (render, cache, unseen, pack). Every command reads its settings as a config dataclass
(config_flags.config_from_args); cli.py imports this module only to run a command, so `crossjepa --help` stays
instant."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from . import shared_settings as shared
from .config_flags import config_from_args
from .config_io import setting
from .render.splat import SHADINGS
from .teacher.model import DEFAULT_TEACHER, POOLINGS
from .validate import check_choice, check_device, check_int, check_number, check_str

log = logging.getLogger("crossjepa")


@dataclass
class RenderConfig:
    """`crossjepa render`: a PNG grid of rendered views for a few objects."""

    data: str = shared.data()
    out: str = shared.out("directory (view_grid.png)")
    objects: int = setting(6, "objects to render")
    views: int = setting(6, "views per object")
    image_size: int = setting(224, "image side in pixels")
    num_points: int = shared.stored_points("rendered: larger clouds are subsampled, smaller ones repeated")

    def __post_init__(self) -> None:
        for name in ("objects", "views", "image_size", "num_points"):
            check_int(name, getattr(self, name), 1)


@dataclass
class CacheConfig:
    """`crossjepa cache`: render views and embed them once with the frozen teacher, or verify a cache."""

    data: Optional[str] = setting(None, shared.DATA_HELP)
    out: Optional[str] = setting(None, "cache directory to build")
    split: str = setting("train", "the dataset split to cache (train; test for a test split's cache)")
    verify: Optional[str] = setting(None, "recompute the checksums of a finished cache", metavar="DIR")
    teacher: str = setting(
        DEFAULT_TEACHER,
        "timm model name (ImageNet weights installed offline by pip for the default; e.g. vit_base_patch14_dinov2 "
        "with --teacher-weights)",
    )
    teacher_weights: Optional[str] = setting(None, "local .safetensors/.pth weights for the teacher", one_of="weights")
    teacher_random_init: bool = setting(False, "random teacher (tests, offline demo only)", one_of="weights")
    image_size: int = setting(224, "teacher input resolution")
    pooling: Literal[POOLINGS] = setting("cls", "cls: the model's pooled output; mean: mean of its tokens; both")
    views: int = setting(12, "views per object")
    shading: Literal[SHADINGS] = setting("normal", "how rendered views are coloured")
    point_radius: Optional[float] = setting(None, "splat radius in pixels (default: from image size and points)")
    views_dir: Optional[str] = setting(None, "embed existing renders from this folder instead of rendering")
    num_points: int = shared.stored_points("used for rendering")
    batch_size: Optional[int] = setting(None, "images per teacher batch (default: 16 on a CPU, 64 on a GPU)")
    device: str = shared.device()
    resume: bool = setting(False, "continue an interrupted build")
    overwrite: bool = setting(False, "replace a finished cache built differently")

    def __post_init__(self) -> None:
        check_str("teacher", self.teacher)
        for name in ("image_size", "views", "num_points"):
            check_int(name, getattr(self, name), 1)
        check_int("batch_size", self.batch_size, 1, optional=True)
        check_choice("shading", self.shading, SHADINGS)
        check_number("point_radius", self.point_radius, 0, lo_open=True, optional=True)
        check_device("device", self.device)


@dataclass
class UnseenConfig:
    """`crossjepa unseen`: carve unseen objects without pretraining, for `probe --unseen`."""

    data: str = shared.data()
    out: str = shared.out("JSON file (unseen_objects.json)")
    fraction: float = setting(0.2, "stratified fraction of the objects")
    seed: int = setting(0, "seed of the carve (pretrain's --unseen-seed)")

    def __post_init__(self) -> None:
        check_number("fraction", self.fraction, 0, 1, lo_open=True, hi_open=True)
        check_int("seed", self.seed, 0)


@dataclass
class PackConfig:
    """`crossjepa pack SRC OUT`: convert a dataset to the packed memory-mapped format."""

    src: str = setting("", shared.DATA_HELP, positional=True)
    out: str = setting("", "output directory", positional=True)
    split: str = setting("train", "the split to pack")
    num_points: int = shared.stored_points("(FPS subsample)")

    def __post_init__(self) -> None:
        check_int("num_points", self.num_points, 1)


def run_demo(args) -> None:
    from .demo import DemoConfig, run_demo

    run_demo(config_from_args(DemoConfig, args), progress=not args.quiet)


def run_render(args) -> None:
    import torch

    from .data import contract, open_dataset
    from .render import render_points, save_view_grid, sphere_poses

    cfg = config_from_args(RenderConfig, args)
    ds = open_dataset(cfg.data, split="train", num_points=cfg.num_points)
    items = [ds[i] for i in range(min(cfg.objects, len(ds)))]
    views = render_points(
        torch.stack([it["points"] for it in items]), sphere_poses(cfg.views), image_size=cfg.image_size
    )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    names = contract.classes(ds)
    titles = [names[it["label"]] if names and it["label"] >= 0 else f"object {i}" for i, it in enumerate(items)]
    path = save_view_grid(views.image, out / "view_grid.png", titles=titles)
    print(f"wrote {path}")


def run_cache(args) -> None:
    from .teacher import verify_cache

    cfg = config_from_args(CacheConfig, args)
    if cfg.verify:
        verify_cache(cfg.verify)
        print(f"{cfg.verify}: all chunk checksums match")
        return
    if not (cfg.data and cfg.out):
        raise ValueError("--data and --out: expected both to build a cache (or --verify DIR)")
    from .device import resolve_device
    from .train.distributed import close_distributed, init_distributed, rank_device

    device = resolve_device(cfg.device)
    # Under torchrun every process builds its share of the chunks; the coordination needs only gloo.
    dist_info = init_distributed(device, backend="gloo")
    try:
        path = _build_cache(cfg, rank_device(device, dist_info), progress=not args.quiet)
    finally:
        close_distributed(dist_info)
    if dist_info.is_main:
        print(f"cache ready: {path}")


def _build_cache(cfg: CacheConfig, device, progress: bool):
    from .data import open_dataset
    from .teacher import RenderedViews, build_cache, load_teacher

    dataset = open_dataset(cfg.data, split=cfg.split, num_points=cfg.num_points)
    teacher = load_teacher(
        cfg.teacher,
        weights=cfg.teacher_weights,
        random_init=cfg.teacher_random_init,
        pooling=cfg.pooling,
        image_size=cfg.image_size,
        device=device,
    )
    if cfg.views_dir:
        from .data.views_on_disk import ViewsOnDisk

        view_source = ViewsOnDisk(cfg.views_dir, dataset, image_size=teacher.image_size)
    else:
        view_source = RenderedViews(
            dataset,
            cfg.views,
            teacher.image_size,
            shading=cfg.shading,
            point_radius=cfg.point_radius,
            device=teacher.device,
        )
    return build_cache(
        dataset,
        cfg.out,
        teacher,
        num_views=cfg.views,
        view_source=view_source,
        batch_size=cfg.batch_size,
        resume=cfg.resume,
        overwrite=cfg.overwrite,
        progress=progress,
    )


def run_pretrain(args) -> None:
    from .train.config import TrainConfig
    from .train.pretrain import pretrain

    cfg = config_from_args(TrainConfig, args)
    if not Path(cfg.cache).is_dir():
        raise ValueError(f"--cache {cfg.cache}: not a directory (build it with `crossjepa cache`)")
    path = pretrain(cfg, resume=args.resume, progress=not args.quiet)
    print(f"final weights: {path}")


def run_probe(args) -> None:
    from .data.carve import UNSEEN_FILE
    from .eval.config import ProbeConfig
    from .eval.probe_run import probe_checkpoint, probe_teacher_cache

    cfg = config_from_args(ProbeConfig, args)
    carved = cfg.checkpoint and Path(cfg.checkpoint).parent / UNSEEN_FILE
    if carved and not cfg.unseen and carved.is_file():
        log.warning(
            "%s: its pretraining kept the objects in %s out; without --unseen %s this probe fits and "
            "scores on objects the encoder trained on",
            cfg.checkpoint,
            carved,
            carved,
        )
    report = probe_teacher_cache(cfg) if cfg.teacher_cache else probe_checkpoint(cfg, progress=not args.quiet)
    from .atomic import write_json

    write_json(Path(cfg.out), report)
    acc = report["accuracy"]
    print(
        f"{report['protocol']}: accuracy {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} % "
        f"over {len(acc['per_seed'])} seeds -> {cfg.out}"
    )


def run_unseen(args) -> None:
    from .atomic import write_json
    from .data import open_dataset
    from .data.carve import carve_unseen

    cfg = config_from_args(UnseenConfig, args)
    record = carve_unseen(open_dataset(cfg.data, split="train"), cfg.fraction, cfg.seed, name="--fraction")
    write_json(Path(cfg.out), record)
    print(f"{record['num_unseen']} unseen objects of {record['dataset']['num_objects']} -> {cfg.out}")


def _print_accuracy(report: dict, what: str, out: str) -> None:
    acc = report["accuracy"]
    print(
        f"{report['protocol']}: {what} {100 * acc['mean']:.2f} +- {100 * acc['std']:.2f} % "
        f"-> {Path(out) / 'report.json'}"
    )


def run_finetune(args) -> None:
    from .eval.config import FinetuneConfig
    from .eval.finetune_run import run_finetune as finetune

    cfg = config_from_args(FinetuneConfig, args)
    report = finetune(cfg, resume=args.resume, progress=not args.quiet)
    _print_accuracy(report, "test accuracy", cfg.out)
    if report["vote"]:
        vote = report["vote"]
        print(f"with {vote['copies']}-copy test-time voting: {100 * vote['mean']:.2f} +- {100 * vote['std']:.2f} %")


def run_fewshot(args) -> None:
    from .eval.config import FewshotConfig
    from .eval.fewshot import run_fewshot as fewshot

    cfg = config_from_args(FewshotConfig, args)
    _print_accuracy(fewshot(cfg, resume=args.resume, progress=not args.quiet), "accuracy", cfg.out)


def run_embed(args) -> None:
    from .eval.config import EmbedConfig
    from .eval.embed import run_embed as embed

    paths = embed(config_from_args(EmbedConfig, args), progress=not args.quiet)
    print(f"wrote {paths['features']} (labels: {paths['labels']}, names: {paths['meta']})")


def run_pack(args) -> None:
    from .data.packing import pack

    cfg = config_from_args(PackConfig, args)
    print(f"packed: {pack(cfg.src, cfg.out, split=cfg.split, num_points=cfg.num_points)}")


def run_bench(args) -> None:
    from .perf.bench import run_bench_command
    from .perf.cli_args import BenchConfig

    run_bench_command(config_from_args(BenchConfig, args), quiet=args.quiet)


def run_profile(args) -> None:
    from .perf.cli_args import ProfileConfig
    from .perf.profile import run_profile_command

    run_profile_command(config_from_args(ProfileConfig, args))
