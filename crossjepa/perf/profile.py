"""`crossjepa profile`: N pretraining steps under torch.profiler, on synthetic shapes with synthetic teacher
targets (no cache or teacher needed), after one warm-up step.

Writes to OUT: trace.json (Chrome / Perfetto: chrome://tracing or ui.perfetto.dev), top_ops.txt (the ops
with the most self time), memory_timeline.png (memory sampled every 5 ms with the step and stage spans),
summary.json (environment, configuration, step times, per-stage breakdown, peak memory, top ops, file
names) and, on a GPU, memory_snapshot.pickle (torch.cuda.memory._dump_snapshot: drag it into
pytorch.org/memory_viz).

Stages are the profiler ranges of one step: "data" (here), "tokenizer", "encoder", "predictor" (the model),
"loss", "backward", "optimizer" (TrainStep); "other" is the rest of the step's wall time. Host time is how
long each range was open on the host; on a GPU, device time is the kernel time launched inside it (see
stage_breakdown), which is where the step's time goes when the host runs ahead.
"""

from __future__ import annotations

import bisect
import statistics
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from ..atomic import atomic_target, write_json, write_text
from .env import describe, environment
from .plots import plot_memory_timeline
from .timing import MB, MemorySampler

STAGES = ("data", "tokenizer", "encoder", "predictor", "loss", "backward", "optimizer")


class SyntheticTraining:
    """One pretraining step's inputs: synthetic shapes from the device-resident loader (augmented), the
    views' cameras turned with the augmentation rotation, random colour histograms and random standardised
    targets drawn on the device (no host sync)."""

    def __init__(self, model, batch: int, views: int, device: torch.device, seed: int = 0):
        from ..data import make_loader
        from ..data.synthetic import SyntheticShapes
        from ..render import sphere_poses

        cfg = model.config
        self.device, self.views, self.bins, self.dim = device, views, cfg.condition.histogram_bins, cfg.teacher_dim
        points = cfg.tokenizer.num_points
        # Enough objects for a few distinct batches; epochs repeat (generation costs ~3 ms per object).
        dataset = SyntheticShapes(max(batch, min(2048, 4 * batch)), num_points=points, seed=seed)
        self.loader = make_loader(
            dataset,
            batch,
            backend="device",
            shuffle=True,
            augment=True,
            num_points=points,
            seed=seed,
            drop_last=True,
            device=device,
        )
        self.poses = sphere_poses(views).to(device)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.mean = torch.zeros(self.dim, device=device)
        self.std = torch.ones(self.dim, device=device)
        self._batches = self._forever()

    def _forever(self):
        while True:
            yield from self.loader

    def __call__(self) -> dict:
        batch = next(self._batches)
        b = batch["points"].shape[0]
        rot = torch.eye(4, device=self.device).repeat(b, 1, 1)
        rot[:, :3, :3] = batch["rotation"].to(self.device)
        hist = torch.rand(b, self.views, 3, self.bins, generator=self.gen, device=self.device)
        return {
            "points": batch["points"].to(self.device, non_blocking=True),
            "target": torch.randn(b, self.views, self.dim, generator=self.gen, device=self.device),
            "poses": rot[:, None] @ self.poses,
            "mean": self.mean,
            "std": self.std,
            "histograms": (hist / hist.sum(-1, keepdim=True)).flatten(2),
        }


def stage_breakdown(events, steps: int, host_step_ms: float, device_step_ms: float | None = None):
    """Per-step milliseconds of each stage and its share of the mean step (host: of the host's step time;
    device: of the step time by CUDA events), and the host ranges [(stage, start us, end us)].

    Host time is the range's duration on the host. Device time is the kernels launched while the range was
    open on the host: assigned by launch time, so the kernels autograd launches from its own thread count
    toward "backward" too."""
    host = dict.fromkeys(STAGES, 0.0)
    spans = sorted(
        (e.time_range.start, e.time_range.end, e.name)
        for e in events
        if e.name in host and e.device_type == DeviceType.CPU
    )
    for start, end, name in spans:
        host[name] += end - start
    device = dict.fromkeys(list(STAGES) + ["other"], 0.0)
    starts = [s[0] for s in spans]
    for e in events:
        if e.device_type != DeviceType.CPU or not e.kernels:
            continue
        i = bisect.bisect_right(starts, e.time_range.start) - 1
        inside = i >= 0 and e.time_range.start < spans[i][1]
        device[spans[i][2] if inside else "other"] += sum(k.duration for k in e.kernels)
    out = {name: {"host_ms": host[name] / 1e3 / steps} for name in STAGES}
    out["other"] = {"host_ms": host_step_ms - sum(v["host_ms"] for v in out.values())}
    for name, v in out.items():
        v["host_share"] = v["host_ms"] / host_step_ms
        if device_step_ms is not None:
            v["device_ms"] = device[name] / 1e3 / steps
            v["device_share"] = v["device_ms"] / device_step_ms
    return out, [(name, start, end) for start, end, name in spans]


def _top_ops(prof, cuda: bool, limit: int = 15) -> tuple[str, list[dict]]:
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages()
    table = averages.table(sort_by=sort, row_limit=30, max_name_column_width=60)
    key = (lambda a: a.self_device_time_total) if cuda else (lambda a: a.self_cpu_time_total)
    rows = [
        {
            "name": a.key,
            "calls": a.count,
            "self_cpu_ms": a.self_cpu_time_total / 1e3,
            "cpu_total_ms": a.cpu_time_total / 1e3,
            "self_device_ms": a.self_device_time_total / 1e3,
        }
        for a in sorted(averages, key=key, reverse=True)[:limit]
    ]
    return table, rows


def _format_stages(stages: dict, cuda: bool) -> str:
    lines = [
        f"{'stage':<10} {'host ms/step':>13} {'share':>7}" + (f" {'device ms/step':>15} {'share':>7}" if cuda else "")
    ]
    for name, v in stages.items():
        line = f"{name:<10} {v['host_ms']:>13.2f} {100 * v['host_share']:>6.1f}%"
        lines.append(line + (f" {v['device_ms']:>15.2f} {100 * v['device_share']:>6.1f}%" if cuda else ""))
    return "\n".join(lines)


def profile_training(
    device: torch.device, preset: str, batch: int, views: int, steps: int, out: Path, echo=print
) -> dict:
    from ..models import build
    from ..train.config import TrainConfig
    from ..train.optim import build_optimizer
    from ..train.step import TrainStep

    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build(preset).to(device)
    opt, sched = build_optimizer(model, TrainConfig(preset=preset, batch_size=batch), steps + 1, device)
    train_step = TrainStep(model, opt, sched, device=device)
    data = SyntheticTraining(model, batch, views, device)

    def one_step():
        with record_function("data"):
            inputs = data()
        return train_step(**inputs)

    one_step()  # warm-up: allocator, attention backend choice, lazy imports
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        # Python stacks only: C++ unwinding on every allocation would dominate the profiled steps.
        torch.cuda.memory._record_memory_history(max_entries=100_000, stacks="python")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    marks, events = [], []
    with profile(activities=activities, profile_memory=True) as prof:
        t_prof = time.perf_counter()
        with MemorySampler(device) as mem:  # stops before the profiler's own post-processing
            for _ in range(steps):
                t0 = time.perf_counter()
                if cuda:
                    events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
                    events[-1][0].record()
                one_step()
                if cuda:
                    events[-1][1].record()
                marks.append((t0, time.perf_counter()))
            if cuda:
                torch.cuda.synchronize(device)
    host_ms = [(b - a) * 1e3 for a, b in marks]
    step_ms = [s.elapsed_time(e) for s, e in events] if cuda else host_ms
    median = statistics.median(step_ms)
    stages, spans = stage_breakdown(
        prof.events(), steps, statistics.fmean(host_ms), statistics.fmean(step_ms) if cuda else None
    )
    table, top = _top_ops(prof, cuda)

    files = {
        "trace": "trace.json",
        "top_ops": "top_ops.txt",
        "memory_timeline": "memory_timeline.png",
        "summary": "summary.json",
    }
    with atomic_target(out / files["trace"]) as tmp:
        prof.export_chrome_trace(str(tmp))
    peak = {"rss_mb": mem.peak_rss_mb}
    if cuda:
        peak.update(
            cuda_max_allocated_mb=torch.cuda.max_memory_allocated(device) / MB,
            cuda_max_reserved_mb=torch.cuda.max_memory_reserved(device) / MB,
        )
        files["memory_snapshot"] = "memory_snapshot.pickle"
        with atomic_target(out / files["memory_snapshot"]) as tmp:
            torch.cuda.memory._dump_snapshot(str(tmp))
        torch.cuda.memory._record_memory_history(enabled=None)

    env = environment(device)
    title = f"crossjepa profile: {preset}, batch {batch} x {views} views, {device.type} ({env['device_name']})"
    host_spans = [(name, t_prof + s / 1e6, t_prof + e / 1e6) for name, s, e in spans]
    plot_memory_timeline(out / files["memory_timeline"], mem.samples, marks, host_spans, title)
    stage_text = _format_stages(stages, cuda)
    write_text(
        out / files["top_ops"],
        f"{title}\n{describe(env)}\n\nper-stage breakdown (mean per step)\n"
        f"{stage_text}\n\ntop ops by self {'device' if cuda else 'CPU'} time "
        f"over {steps} steps\n{table}\n",
    )
    summary = {
        "schema": "crossjepa-profile/1",
        "env": env,
        "config": {
            "device": str(device),
            "preset": preset,
            "batch_size": batch,
            "views_per_object": views,
            "num_points": model.config.tokenizer.num_points,
            "steps": steps,
            "warmup_steps": 1,
            "amp_bf16": train_step.use_amp,
        },
        "step_ms": {
            "median": median,
            "min": min(step_ms),
            "max": max(step_ms),
            "all": step_ms,
            "timer": "cuda events" if cuda else "perf_counter",
        },
        "objects_per_s": batch / (median / 1e3),
        "note": "step times include the profiler's overhead; `crossjepa bench --suite train` measures throughput",
        "stages": stages,
        "peak_memory": peak,
        "top_ops": top,
        "files": files,
    }
    write_json(out / files["summary"], summary)
    echo(
        f"{title}\n{describe(env)}\n\n{table}\nper-stage breakdown (mean per step; median step {median:.1f} ms, "
        f"{summary['objects_per_s']:.1f} objects/s)\n{stage_text}\n\npeak memory: "
        + ", ".join(f"{k} {v:.0f}" for k, v in peak.items())
        + "\n"
        + "\n".join(f"wrote {out / name}" for name in files.values())
    )
    return summary


def run_profile_command(cfg) -> dict:
    """`crossjepa profile` with its settings (perf/cli_args.ProfileConfig)."""
    from ..device import resolve_device

    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    preset = cfg.preset or ("default" if cuda else "tiny")
    batch = cfg.batch_size or (512 if cuda else 4)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    return profile_training(device, preset, batch, cfg.views, cfg.steps, out)
