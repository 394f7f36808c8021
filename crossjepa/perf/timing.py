"""The timer of `crossjepa bench` and the profiler, and the peak-memory probe both benchmark entry points use.

`measure(fn, device)` runs fn `warmup` times untimed, then `repeats` timed calls: CUDA events around each
call on a GPU (nothing synchronises between calls, so a step that never syncs the host is timed as it runs in
training), `time.perf_counter` on the CPU. With `budget_s`, a slow case stops early: warm-up calls stop once
they have used a quarter of the budget, and the timed calls are as many as the rest of it holds by the fastest
warm-up call (on a GPU each warm-up call is synchronised to be timed), or on the host clock, whichever is
fewer; at least one of each runs. `Timing.requested` keeps how many were asked for.
Peak memory over the timed calls: `torch.cuda.max_memory_allocated` on a GPU, the process RSS sampled by a
background thread on the CPU (torch's CPU allocator keeps no peak), as `PeakMemory` measures it;
benchmarks/conftest.py wraps pytest-benchmark's timed rounds in the same probe.
"""

from __future__ import annotations

import resource
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..validate import check_int, check_number

MB = 2.0**20


@dataclass
class Timing:
    samples_ms: list[float]
    peak_mem_mb: float | None
    mem_kind: str  # "cuda_max_allocated" | "rss_peak"
    requested: int | None = None  # timed calls asked for; more than len(samples_ms) when a budget cut them

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    def summary(self) -> dict:
        return {
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "repeats": len(self.samples_ms),
            "peak_mem_mb": self.peak_mem_mb,
            "mem_kind": self.mem_kind,
        }


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; elsewhere the lifetime peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / MB
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class MemorySampler:
    """Samples memory every `interval_s` in a thread while active: RSS always, and CUDA allocated/reserved
    when `device` is a GPU (allocator statistics: reading them does not synchronise the device)."""

    device: torch.device = torch.device("cpu")
    interval_s: float = 0.005
    samples: list[tuple[float, float, float | None, float | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        alloc = reserved = None
        if self.device.type == "cuda":
            alloc = torch.cuda.memory_allocated(self.device) / MB
            reserved = torch.cuda.memory_reserved(self.device) / MB
        self.samples.append((time.perf_counter(), rss_mb(), alloc, reserved))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def peak_rss_mb(self) -> float:
        return max(s[1] for s in self.samples)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory over a block, in `mb` after it: `torch.cuda.max_memory_allocated` on a GPU, the sampled
    process RSS on the CPU (`kind` says which)."""

    def __init__(self, device: str | torch.device):
        self.device = torch.device(device)
        self.kind = "cuda_max_allocated" if self.device.type == "cuda" else "rss_peak"
        self.mb: float | None = None
        self._sampler = MemorySampler()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._sampler.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / MB
        else:
            self._sampler.__exit__(*exc)
            self.mb = self._sampler.peak_rss_mb


def _warm_up(fn, device: torch.device, warmup: int, budget_s: float | None) -> float | None:
    """Run the warm-up calls; with a budget, stop once they have used a quarter of it and return the fastest
    call's seconds (each call synchronised, so that is its device time too)."""
    fastest, began = None, time.perf_counter()
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        if budget_s is None:
            continue
        sync(device)
        now = time.perf_counter()
        fastest = now - t0 if fastest is None else min(fastest, now - t0)
        if now - began >= budget_s / 4:
            break
    sync(device)
    return fastest


def measure(
    fn: Callable[[], object],
    device: str | torch.device = "cpu",
    *,
    warmup: int = 3,
    repeats: int = 10,
    budget_s: float | None = None,
) -> Timing:
    """Time `repeats` calls of fn after `warmup` untimed ones, within `budget_s` seconds when given; see the
    module docstring."""
    check_int("warmup", warmup, 0)
    check_int("repeats", repeats, 1)
    check_number("budget_s", budget_s, 0, lo_open=True, optional=True)
    device = torch.device(device)
    began = time.perf_counter()
    per_call = _warm_up(fn, device, warmup, budget_s)
    planned, deadline = repeats, float("inf")
    if budget_s is not None:
        deadline = began + budget_s
        if per_call:
            planned = max(1, min(repeats, int((deadline - time.perf_counter()) / per_call)))
    with PeakMemory(device) as peak:
        if device.type == "cuda":
            events = [
                (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(planned)
            ]
            for used, (start, end) in enumerate(events, 1):  # noqa: B007 (`used` counts the recorded pairs)
                start.record()
                fn()
                end.record()
                if time.perf_counter() >= deadline:  # a host-bound case: launching is the time it takes
                    break
            events = events[:used]
        else:
            samples = []
            for _ in range(planned):
                t0 = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - t0) * 1e3)
                if time.perf_counter() >= deadline:
                    break
    if device.type == "cuda":  # PeakMemory's exit synchronised: every event has its time
        samples = [start.elapsed_time(end) for start, end in events]
    return Timing(samples, peak.mb, peak.kind, requested=repeats)
