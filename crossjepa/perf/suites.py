"""The benchmark suites behind `crossjepa bench` and benchmarks/bench_*.py, and the one way a case is run.

A suite yields `Case`s (crossjepa.perf.case): what is timed (a factory that builds the inputs and returns the
function to call), its shape, backend, thread count and work per call, the references it is compared with and
the speed-up it targets. `run_case` builds one case, checks it against its reference, times it (with
crossjepa.perf.timing.measure, or the timer pytest-benchmark passes) and frees it before the next is built. It
returns one row:
  {suite, name, impl, shape, backend, threads, load, median_ms, min_ms, max_ms, repeats, throughput, unit,
   peak_mem_mb, mem_kind, ratio_vs, ratio, ratios, target, meets_target, agrees, note}
`add_ratios` fills ratio = reference median / this median (> 1: faster than the reference), for every
reference of the row in `ratios`, and meets_target, comparing rows of the same shape and load only. A case
that cannot run here keeps null timings and says why in note.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import itertools
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .. import ops
from ..models import build
from ..validate import check_choice
from . import references as refs
from .case import Case, Settings, first_line, threads
from .inputs import ball_clouds
from .suite_ops import attention_cases, ops_cases
from .suite_probe import probe_cases
from .timing import Timing, measure

# -------------------------------------------------------------------------------------------- loaders


class _Clouds:
    """Clouds held in memory as a dataset (what `pack` and `build_cache` need: len, items, a fingerprint)."""

    kind, classes, split, normalized = "in-memory-clouds", None, "train", True

    def __init__(self, clouds: torch.Tensor):
        self.clouds = clouds

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, i: int) -> dict:
        return {"points": self.clouds[i], "label": i % 10}

    def fingerprint(self) -> str:
        return hashlib.sha256(self.clouds.numpy().tobytes()).hexdigest()


class _NpyFiles(torch.utils.data.Dataset):
    """The baseline: one .npy file per object, np.load per item, default collate."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.load(self.paths[i]))


def loader_cases(s: Settings) -> Iterator[Case]:
    from ..data import PackedDataset, make_loader, pack
    from ..data.loaders import BACKENDS

    objects, size, batch = (32, 256, 8) if s.quick else (8192, 1024, 512)
    workers = 0 if s.quick else min(4, os.cpu_count() or 1)  # quick: no worker processes on a busy CI machine
    clouds = ball_clouds(objects, size, torch.Generator().manual_seed(0))
    packed = PackedDataset(pack(_Clouds(clouds), s.workdir / "packed", num_points=size, progress=False))
    files = s.workdir / "files"
    files.mkdir()
    paths = [files / f"{i:06d}.npy" for i in range(objects)]
    for path, cloud in zip(paths, clouds.numpy()):
        np.save(path, cloud)
    shape = f"{objects} objects x {size} pts, batch {batch}, {workers} workers"

    def per_file():
        loader = torch.utils.data.DataLoader(
            _NpyFiles(paths), batch_size=batch, shuffle=True, num_workers=workers, pin_memory=s.cuda
        )

        def epoch():
            for x in loader:
                x.to(s.device, non_blocking=True)

        return epoch

    yield Case(
        "loader epoch",
        "per-file np.load",
        shape,
        "torch DataLoader",
        objects,
        "objects/s",
        per_file,
        note="no augmentation",
    )
    for backend in BACKENDS:

        def packed_epoch(backend=backend):
            loader = make_loader(
                packed,
                batch,
                backend=backend,
                shuffle=True,
                augment=True,
                num_points=size,
                device=s.device,
                num_workers=workers,
            )

            def epoch():
                for _ in loader:
                    pass

            return epoch

        yield Case(
            "loader epoch",
            f"packed {backend}",
            shape,
            backend,
            objects,
            "objects/s",
            packed_epoch,
            ("per-file np.load",),
            note="augmented (subset, rotation, jitter)",
            optional=backend == "dali",
        )


# ---------------------------------------------------------------------------------------- train step


def train_shape(device: torch.device, quick: bool) -> tuple[str, int, int, int | None]:
    """(preset, objects per step, views per object, points per object or None for the preset's)."""
    if quick:
        return "tiny", 2, 2, 256
    return ("default", 512, 4, None) if device.type == "cuda" else ("default", 16, 4, None)


def _step_factory(base, batch, device, *, reference: bool, compiled: bool, amp: bool, conv_embed: bool = False):
    def factory():
        from ..train.config import TrainConfig
        from ..train.optim import build_optimizer
        from ..train.step import TrainStep

        if reference:
            model = refs.as_reference(base)
        else:
            model = refs.with_conv_patch_embed(base) if conv_embed else copy.deepcopy(base)
        model = model.to(device)
        if reference:  # what a straightforward port would use: stock AdamW, no fusing, no schedule
            opt, sched = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05), None
        else:
            opt, sched = build_optimizer(model, TrainConfig(), 10**6, device)
        step = TrainStep(torch.compile(model) if compiled else model, opt, sched, amp=amp, device=device)
        return lambda: step(**batch)

    return factory


def _tokenizer_factory(tokenizer, points, device):
    def factory():
        tok = tokenizer().to(device)

        def fn():
            tok.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                patches, _ = tok(points)
            patches.float().square().mean().backward()

        return fn

    return factory


def _embed_factory(embed, neighbourhoods, device):
    def factory():
        module = embed().to(device)

        def fn():
            module.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                tokens = module(neighbourhoods)
            tokens.float().square().mean().backward()

        return fn

    return factory


def train_cases(s: Settings) -> Iterator[Case]:
    preset, b, v, p = train_shape(s.device, s.quick)
    torch.manual_seed(0)
    base = build(preset)
    p = p or base.config.tokenizer.num_points
    batch = refs.synthetic_batch(base, b, v, s.device, torch.Generator().manual_seed(0), num_points=p)
    shape = f"{preset} B={b} V={v} P={p}"
    prec = "bf16" if s.cuda else "fp32"
    ours = f"ops:{ops.backend('group', s.device)} attn:dispatch {prec}"
    # torch.compile costs minutes of compiling before the first step: timed only when asked for (--compile).
    compiling = s.cuda and s.compile
    compile_note = "" if compiling else "GPU only" if not s.cuda else "off: --compile times it"
    eager, compiled_ref = "eager fp32 reference", "reference compile bf16"
    conv = "crossjepa Conv1d embed"  # ours with the previous (Point-MAE style) patch embedding: before/after
    yield Case(
        "train step",
        "crossjepa",
        shape,
        ours,
        b,
        "objects/s",
        _step_factory(base, batch, s.device, reference=False, compiled=False, amp=True),
        (eager, compiled_ref, conv),
    )
    yield Case(
        "train step",
        conv,
        shape,
        ours,
        b,
        "objects/s",
        _step_factory(base, batch, s.device, reference=False, compiled=False, amp=True, conv_embed=True),
        note="patch embedding: Conv1d(k=1) over (B*G, C, k) and the [pooled, x] concat",
    )
    yield Case(
        "train step",
        "crossjepa compiled",
        shape,
        ours + " compile",
        b,
        "objects/s",
        _step_factory(base, batch, s.device, reference=False, compiled=True, amp=True) if compiling else None,
        (eager, compiled_ref),
        note=compile_note,
        optional=True,
    )
    yield Case(
        "train step",
        eager,
        shape,
        "ops:torch-ref attn:sdpa fp32",
        b,
        "objects/s",
        _step_factory(base, batch, s.device, reference=True, compiled=False, amp=False),
    )
    yield Case(
        "train step",
        compiled_ref,
        shape,
        "ops:torch-ref attn:sdpa bf16 compile",
        b,
        "objects/s",
        _step_factory(base, batch, s.device, reference=True, compiled=True, amp=True) if compiling else None,
        note=compile_note,
        optional=True,
    )

    tok = base.encoder.tokenizer
    tshape = f"{preset} B={b} P={p} G={tok.cfg.num_groups} k={tok.cfg.group_size} {prec}"
    points = batch["points"]
    yield Case(
        "tokenizer fwd+bwd",
        "crossjepa",
        tshape,
        f"ops:{ops.backend('group', s.device)}",
        b,
        "objects/s",
        _tokenizer_factory(lambda: copy.deepcopy(tok), points, s.device),
        ("Point-MAE style", "torch reference", conv),
    )
    yield Case(
        "tokenizer fwd+bwd",
        conv,
        tshape,
        f"ops:{ops.backend('group', s.device)}",
        b,
        "objects/s",
        _tokenizer_factory(lambda: refs.with_conv_patch_embed(tok), points, s.device),
    )
    yield Case(
        "tokenizer fwd+bwd",
        "Point-MAE style",
        tshape,
        refs.point_mae_backend(s.device),
        b,
        "objects/s",
        _tokenizer_factory(lambda: refs.point_mae_tokenizer(tok), points, s.device),
    )
    yield Case(
        "tokenizer fwd+bwd",
        "torch reference",
        tshape,
        "ops:torch-ref",
        b,
        "objects/s",
        _tokenizer_factory(lambda: refs.reference_tokenizer(tok), points, s.device),
    )

    with torch.no_grad():
        hoods = tok.group(points)[1]
    eshape = f"{preset} B={b} G={tok.cfg.num_groups} k={tok.cfg.group_size} {prec}"
    yield Case(
        "patch embed fwd+bwd",
        "channels-last",
        eshape,
        "F.linear + BatchNorm1d",
        b,
        "objects/s",
        _embed_factory(lambda: copy.deepcopy(tok.embed), hoods, s.device),
        ("Conv1d",),
    )
    yield Case(
        "patch embed fwd+bwd",
        "Conv1d",
        eshape,
        "Conv1d(k=1) + cat",
        b,
        "objects/s",
        _embed_factory(lambda: refs.conv_patch_embed(tok.embed, tok.cfg), hoods, s.device),
    )


# --------------------------------------------------------------------------------------- cache build


def cache_cases(s: Settings) -> Iterator[Case]:
    """Render, teacher and whole-build rows of the teacher cache, today's path beside the previous one (the
    teacher as timm builds it, the renderer's pooled hole filling, 64 images per batch); on a GPU also DINOv2
    ViT-B/14 (random-init: the same compute as the paper's teacher, no weights needed)."""
    from ..data.synthetic import SyntheticShapes
    from ..teacher import RenderedViews, build_cache, load_teacher
    from ..teacher.cache import DEFAULT_BATCH_SIZE

    if s.quick:
        size, objects, views, points = 64, 2, 2, 512
    else:  # ModelNet40's clouds (1,024 points) at the teacher's own resolution, the recipe's 4 views
        size, views, points = 224, 4, 1024
        objects = 256 if s.cuda else 32
    # Render and teacher rows at today's default batch; the build rows each at its path's default: today's
    # (DEFAULT_BATCH_SIZE) against the previous one (64 images on every device).
    default_batch = DEFAULT_BATCH_SIZE["cuda" if s.cuda else "cpu"]
    batches = {"optimized": default_batch, "previous": 64}
    per_call = max(1, default_batch // views)
    # Shapes generated once, held in memory: the timed build reads clouds as it would from a packed dataset.
    shapes = SyntheticShapes(objects, num_points=points)
    dataset = _Clouds(torch.stack([shapes[i]["points"] for i in range(objects)]))
    source = RenderedViews(dataset, views, size, device=s.device)
    images = objects * views
    shape = f"{objects} objects x {views} views, {points} pts, {size}px"
    heavy = (1, 3) if s.cuda and not s.quick else (1, 2)
    counter = itertools.count()
    paths = {"optimized": (True, contextlib.nullcontext), "previous": (False, refs.previous_renderer)}

    def render_factory(previous):
        def fn():
            with previous():
                for start in range(0, objects, per_call):
                    source(list(range(start, min(objects, start + per_call))))

        return lambda: fn

    def teacher_factory(teacher):
        batch = source(list(range(min(objects, per_call))))[0].flatten(0, 1)
        return lambda: lambda: teacher(batch)

    def build_factory(teacher, previous, batch_size):
        def fn():
            k = next(counter)
            shutil.rmtree(s.workdir / f"cache{k - 1}", ignore_errors=True)
            with previous():
                build_cache(
                    dataset,
                    s.workdir / f"cache{k}",
                    teacher,
                    num_views=views,
                    batch_size=batch_size,
                    progress=False,
                )

        return lambda: fn

    for impl, (_, previous) in paths.items():
        vs = ("previous",) if impl == "optimized" else ()
        render_shape = f"{shape}, {per_call * views} images/call"
        yield Case(
            "cache: render", impl, render_shape, "crossjepa.render", images, "images/s", render_factory(previous), vs
        )
    teachers = [("tf_efficientnet_lite0", not s.quick)]  # the default teacher, with its weights where installed
    if s.cuda and not s.quick:
        teachers.append(("vit_base_patch14_dinov2", False))
    for name, pretrained in teachers:
        for impl, (optimize, previous) in paths.items():
            try:
                teacher = load_teacher(
                    name, random_init=not pretrained, image_size=size, device=s.device, optimize=optimize
                )
            except RuntimeError:  # no offline weights: the same compute with random weights
                teacher = load_teacher(name, random_init=True, image_size=size, device=s.device, optimize=optimize)
            desc = f"{name} {teacher.weights_source} " + ("bf16" if s.cuda else "fp32")
            vs = ("previous",) if impl == "optimized" else ()
            target = (
                2.0 if name == "tf_efficientnet_lite0" and not (s.cuda or s.quick) and impl == "optimized" else None
            )
            yield Case(
                f"cache: teacher {name}",
                impl,
                f"{per_call * views} images, {size}px",
                desc,
                per_call * views,
                "images/s",
                teacher_factory(teacher),
                vs,
                repeats=heavy,
            )
            yield Case(
                f"cache: build {name}",
                impl,
                f"{shape}, each path's default batch",
                f"{desc}, {batches[impl]} images/batch",
                images,
                "images/s",
                build_factory(teacher, previous, batches[impl]),
                vs,
                note="render + histograms + teacher + write + checksums",
                repeats=heavy,
                target=target,
            )


SUITES: dict[str, Callable[[Settings], Iterator[Case]]] = {
    "ops": ops_cases,
    "attention": attention_cases,
    "loaders": loader_cases,
    "train": train_cases,
    "cache": cache_cases,
    "probe": probe_cases,
}


# ------------------------------------------------------------------------------------------- runner

Timer = Callable[[Callable[[], object], int, int], Timing]  # (fn, warmup, repeats) -> Timing


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_case(suite: str, case: Case, s: Settings, timer: Timer | None = None) -> dict:
    row = {
        "suite": suite,
        "name": case.name,
        "impl": case.impl,
        "shape": case.shape,
        "backend": case.backend,
        "threads": case.threads,
        "load": s.load,
        "median_ms": None,
        "min_ms": None,
        "max_ms": None,
        "repeats": 0,
        "throughput": None,
        "unit": case.unit,
        "peak_mem_mb": None,
        "mem_kind": None,
        "ratio_vs": case.references[0] if case.references else None,
        "ratio": None,
        "ratios": {},
        "target": case.target,
        "meets_target": None,
        "agrees": None,
        "note": case.note,
    }
    if case.build is None:
        return row
    warmup, repeats = case.repeats or (s.warmup, s.repeats)
    timer = timer or (lambda f, w, r: measure(f, s.device, warmup=w, repeats=r, budget_s=s.budget_s))
    fn = None
    # What existed before the case is not its garbage: frozen, the collection after it scans only the case's
    # own objects (a full collection over torch's import graph costs ~0.3 s per case).
    gc.freeze()
    try:
        with threads(case.threads) as count:
            row["threads"] = count
            fn = case.build()
            if case.check is not None:
                row["agrees"] = bool(case.check())
            timing = timer(fn, warmup, repeats)
    except Exception as err:  # an optional peer (DALI, torch.compile) failing here is a result, not a crash
        if not case.optional:
            raise
        row["note"] = first_line(err)
        return row
    finally:
        del fn
        release(s.device)
        gc.unfreeze()
    row.update(timing.summary())
    row["throughput"] = case.items / (timing.median_ms / 1e3)
    if timing.requested and len(timing.samples_ms) < timing.requested:
        cut = f"{len(timing.samples_ms)} of {timing.requested} repeats in the {s.budget_s:g} s case budget"
        row["note"] = f"{row['note']}; {cut}" if row["note"] else cut
    return row


def add_ratios(rows: list[dict], cases: list[Case]) -> None:
    medians = {(r["suite"], r["name"], r["shape"], r["load"], r["impl"]): r["median_ms"] for r in rows}
    for row, case in zip(rows, cases):
        for ref in case.references:
            theirs = medians.get((row["suite"], row["name"], row["shape"], row["load"], ref))
            if theirs is not None and row["median_ms"]:
                row["ratios"][ref] = theirs / row["median_ms"]
        if row["ratio_vs"] is not None:
            row["ratio"] = row["ratios"].get(row["ratio_vs"])
        if row["target"] is not None and row["ratio"] is not None:
            row["meets_target"] = row["ratio"] >= row["target"]


def run_suite(name: str, settings: Settings, on_row: Callable[[dict], None] | None = None) -> list[dict]:
    check_choice("suite", name, SUITES)
    rows, cases = [], []
    for case in SUITES[name](settings):
        rows.append(run_case(name, case, settings))
        cases.append(case)
        if on_row is not None:
            on_row(rows[-1])
    add_ratios(rows, cases)
    release(settings.device)
    return rows
