"""One CrossJEPA train step (and the tokenizer alone) vs its references, as pytest-benchmark tests.

The cases are exactly `crossjepa bench --suite train`'s (crossjepa.perf.suites.train_cases): our step with the
model as built, the eager fp32 reference (torch reference ops + SDPA, stock AdamW), that reference under
torch.compile in bf16 and our model compiled (GPU only), and the tokenizer's forward+backward: ours, Point-MAE
style (pointnet2_ops FPS when importable, cdist kNN) and on the reference ops. On a GPU: the default preset,
batch 512 x 4 views; on a CPU the quick (tiny) shapes unless CROSSJEPA_BENCH_FULL=1.

    pytest benchmarks/bench_train_step.py --benchmark-json=benchmarks/results/train_step_<device>.json

pytest-benchmark times rounds of one step ending in a synchronize (wall clock); extra_info holds the shared
timer's median (CUDA events on a GPU: no sync between steps), peak memory, throughput, shape, backend and
the environment record (device, driver, versions, commit).
"""

import gc
import os
import tempfile
from pathlib import Path

import pytest
import torch

from crossjepa.perf.env import environment
from crossjepa.perf.suites import Settings, first_line, train_cases
from crossjepa.perf.timing import measure, sync

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
QUICK = DEVICE.type == "cpu" and os.environ.get("CROSSJEPA_BENCH_FULL") != "1"
SETTINGS = Settings(DEVICE, QUICK, Path(tempfile.gettempdir()))
CASES = list(train_cases(SETTINGS))


@pytest.fixture(scope="module")
def env_record():
    return environment(DEVICE)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name}[{c.impl}]".replace(" ", "_") for c in CASES])
def test_train_step(benchmark, case, env_record):
    if case.build is None:
        pytest.skip(case.note)
    warmup, repeats = case.repeats or (SETTINGS.warmup, SETTINGS.repeats)
    try:
        fn = case.build()
        timing = measure(fn, DEVICE, warmup=warmup, repeats=repeats)
    except Exception as err:  # an optional peer (torch.compile) that fails here is reported, not an error
        if not case.optional:
            raise
        pytest.skip(f"{case.impl}: {first_line(err)}")

    def timed():
        fn()
        sync(DEVICE)

    benchmark.pedantic(timed, rounds=repeats, warmup_rounds=0, iterations=1)
    benchmark.extra_info.update(
        name=case.name, impl=case.impl, shape=case.shape, backend=case.backend, **timing.summary(),
        throughput=case.items / (timing.median_ms / 1e3), unit=case.unit, references=list(case.references),
        env=env_record)
    gc.collect()
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()
