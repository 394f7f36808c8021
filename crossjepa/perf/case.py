"""What a benchmark suite is made of: `Case`s, timed under `Settings`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch


@dataclass
class Case:
    name: str
    impl: str
    shape: str
    backend: str
    items: float  # work per call, counted in `unit` (objects, clouds, images)
    unit: str
    build: Callable[[], Callable[[], object]] | None  # None: cannot run here, `note` says why
    references: tuple[str, ...] = ()  # impls of the same name and shape this one is compared with
    note: str = ""
    optional: bool = False  # a failure becomes a note on the row instead of stopping the suite
    repeats: tuple[int, int] | None = None  # (warmup, repeats) when not the suite's default
    threads: int | None = None  # torch/OpenMP threads while timed; None: the process's setting
    target: float | None = None  # the speed-up over references[0] this implementation is built to reach
    check: Callable[[], bool] | None = None  # untimed: does the result agree with references[0]'s (or ours)


@dataclass
class Settings:
    device: torch.device
    quick: bool
    workdir: Path
    load: int = 0  # background spinning processes while the suite runs (recorded on every row)
    budget_s: float | None = None  # wall time a case's calls may use before its repeats stop (timing.measure)
    compile: bool = False  # also time the torch.compile cases (minutes of compiling on a GPU)
    warmup: int = field(init=False)
    repeats: int = field(init=False)

    def __post_init__(self) -> None:
        self.warmup, self.repeats = (1, 2) if self.quick else ((3, 10) if self.cuda else (1, 5))

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def returning(fn):
    """A Case.build for a function whose inputs already exist."""
    return lambda: fn


@contextlib.contextmanager
def threads(count: int | None):
    """torch's intra-op (and the kernels' OpenMP) thread count set to `count` within the block."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def first_line(err: BaseException) -> str:
    """'ErrorType: first line of the message', for a row's note."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
