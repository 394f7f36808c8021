"""`crossjepa demo`: the whole method offline, on synthetic shapes, in a few minutes on a CPU.

synthetic shapes -> rendered views -> pretrained teacher (EfficientNet-Lite0, ImageNet weights installed by pip)
-> cache -> pretrain (tiny preset) -> linear probe of the pretrained encoder beside a random-init encoder and the
teacher's own view-averaged embeddings (the teacher ceiling), all under one protocol -> report.json, view grid,
loss curve.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from . import shared_settings as shared
from .config_io import setting
from .validate import check_device, check_int

log = logging.getLogger("crossjepa.demo")

# Small enough for ~10 minutes on 2 CPU cores, large enough for the probe to mean something.
DEMO_POOLING = "cls"
DEMO_IMAGE_SIZE = 160
DEMO_VIEWS = 6


@dataclass
class DemoConfig:
    """`crossjepa demo`: the whole method offline on synthetic shapes (the module docstring), a few minutes on a
    CPU: writes OUT/report.json, OUT/view_grid.png and OUT/pretrain/loss_curve.png."""

    out: str = shared.out("directory", "demo_out", required=False)
    objects: int = setting(600, "synthetic training objects")
    test_objects: int = setting(400, "synthetic test objects")
    steps: int = setting(1200, "pretraining steps")
    seeds: int = setting(3, "probe seeds (mean +- std)")
    device: str = shared.device()

    def __post_init__(self) -> None:
        check_int("objects", self.objects, 50)
        check_int("test_objects", self.test_objects, 12)
        check_int("steps", self.steps, 1)
        check_int("seeds", self.seeds, 1)
        check_device("device", self.device)


def run_demo(config: DemoConfig, progress: bool = True) -> dict:
    import torch

    from .atomic import write_text
    from .data.contract import dataset_labels
    from .data.synthetic import SyntheticShapes
    from .device import resolve_device
    from .eval.probe import probe_encoder, probe_teacher
    from .eval.probe_run import protocol
    from .models import build
    from .render import render_points, save_view_grid, sphere_poses
    from .teacher import DEFAULT_TEACHER, build_cache, load_teacher, open_cache
    from .train.checkpoint import load_pretrained
    from .train.config import OptimConfig, TrainConfig
    from .train.pretrain import pretrain

    out, num_objects, steps, seeds = Path(config.out), config.objects, config.steps, config.seeds
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(config.device)
    t0 = time.perf_counter()
    timings = {}
    spec = f"synthetic:{num_objects}"
    train_ds = SyntheticShapes(num_objects, split="train")
    test_ds = SyntheticShapes(config.test_objects, split="test")

    sample = [train_ds[i] for i in range(6)]
    grid = render_points(torch.stack([it["points"] for it in sample]), sphere_poses(6), image_size=DEMO_IMAGE_SIZE)
    save_view_grid(grid.image, out / "view_grid.png", titles=[train_ds.classes[it["label"]] for it in sample])

    teacher = load_teacher(DEFAULT_TEACHER, pooling=DEMO_POOLING, image_size=DEMO_IMAGE_SIZE, device=dev)
    caches = {}
    for split, ds in (("train", train_ds), ("test", test_ds)):  # the test cache serves the teacher ceiling only
        caches[split] = build_cache(
            ds,
            out / f"cache_{split}",
            teacher,
            num_views=DEMO_VIEWS,
            resume=True,
            overwrite=True,
            progress=progress,
        )  # the demo owns its caches
    timings["cache_s"] = time.perf_counter() - t0

    cfg = TrainConfig(
        data=spec,
        cache=str(caches["train"]),
        out=str(out / "pretrain"),
        preset="tiny",
        batch_size=32,
        views_per_object=4,
        max_steps=steps,
        checkpoint_every=max(1, steps // 2),
        log_every=10,
        seed=0,
        device=str(dev),
        optim=OptimConfig(lr=1e-3, warmup_fraction=0.1),
    )
    weights = pretrain(cfg, resume=False, progress=progress)
    timings["pretrain_s"] = time.perf_counter() - t0 - timings["cache_s"]

    pretrained = load_pretrained(weights, device=dev)
    torch.manual_seed(0)
    random_init = build(config=pretrained.config).to(dev)
    probe = {}
    for name, model in (("pretrained", pretrained), ("random_init", random_init)):
        start = time.perf_counter()
        probe[name] = probe_encoder(model, train_ds, test_ds, seeds=tuple(range(seeds)), progress=progress)
        timings[f"probe_{name}_s"] = time.perf_counter() - start
    start = time.perf_counter()
    probe["teacher"] = probe_teacher(
        open_cache(caches["train"]),
        dataset_labels(train_ds),
        open_cache(caches["test"]),
        dataset_labels(test_ds),
        seeds=tuple(range(seeds)),
        device=dev,
    )
    timings["probe_teacher_s"] = time.perf_counter() - start
    timings["total_s"] = time.perf_counter() - t0

    report = {
        "probe": {
            name: {
                "mean": r["accuracy"]["mean"],
                "std": r["accuracy"]["std"],
                "per_seed": r["accuracy"]["per_seed"],
                "C": r.get("C"),
                "converged": r["converged"],
            }
            for name, r in probe.items()
        },
        "margin_points": 100 * (probe["pretrained"]["accuracy"]["mean"] - probe["random_init"]["accuracy"]["mean"]),
        "protocol": protocol(5, seeds, has_test=True),
        "data": {"train": spec, "test_objects": len(test_ds), "classes": train_ds.classes},
        "teacher": {
            "name": teacher.name,
            "weights": teacher.weights_id,
            "weights_source": teacher.weights_source,
            "image_size": DEMO_IMAGE_SIZE,
            "pooling": DEMO_POOLING,
            "views": DEMO_VIEWS,
        },
        "heldout": _last_heldout(Path(cfg.out) / "heldout.jsonl"),
        "pretrain": {
            "preset": "tiny",
            "steps": steps,
            "batch_size": cfg.batch_size,
            "views_per_object": cfg.views_per_object,
        },
        "device": str(dev),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "files": {
            "view_grid": "view_grid.png",
            "loss_curve": "pretrain/loss_curve.png",
            "weights": "pretrain/model.safetensors",
        },
    }
    write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    _print_table(report, out)
    return report


def _print_table(report: dict, out: Path) -> None:
    rows = [("features", "probe accuracy (test)")]
    names = {
        "pretrained": "pretrained encoder",
        "random_init": "random-init encoder",
        "teacher": f"teacher ceiling ({report['teacher']['name']}, view-averaged)",
    }
    for name, label in names.items():
        r = report["probe"][name]
        rows.append((label, f"{100 * r['mean']:.1f} +- {100 * r['std']:.1f} %"))
    width = max(len(a) for a, _ in rows)
    print()
    for a, b in rows:
        print(f"  {a:<{width}}  {b}")
    print(f"  margin over random-init: {report['margin_points']:+.1f} points; {report['protocol']}")
    if report["heldout"]:
        h = report["heldout"]
        print(
            f"  held-out R^2 of the predicted teacher embeddings: {h['r2']:.3f} "
            f"(constant predictor {h['const_r2']:.3f})"
        )
    print(
        f"  wrote {out / 'report.json'}, {out / 'view_grid.png'}, {out / 'pretrain' / 'loss_curve.png'}"
        f" in {report['timings_s']['total_s']:.0f} s"
    )


def _last_heldout(path: Path) -> dict | None:
    lines = path.read_text().splitlines() if path.is_file() else []
    return json.loads(lines[-1]) if lines else None
