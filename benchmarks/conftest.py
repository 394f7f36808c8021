"""pytest-benchmark over the suites of `crossjepa bench`.

Each bench_<suite>.py names its SUITE and has one test taking `case`; this file parametrizes it with that
suite's cases (crossjepa.perf.suites), runs each through the same `run_case` as `crossjepa bench`, timed by
the `benchmark` fixture, and at the end writes the rows, in the same schema, to
BENCH_OUT/pytest_<device>[_<suites>][_quick].json:

    python -m pytest benchmarks/bench_ops.py [--bench-device cuda] [--bench-quick] [--bench-out DIR]
"""

import shutil
import tempfile
from pathlib import Path

import pytest

from crossjepa.device import resolve_device
from crossjepa.perf.bench import new_results, results_name, write_results
from crossjepa.perf.suites import SUITES, Settings, add_ratios, run_case
from crossjepa.perf.timing import PeakMemory, Timing, measure, sync

RUN = {"rows": [], "cases": [], "settings": {}}


def pytest_addoption(parser):
    group = parser.getgroup("crossjepa bench")
    group.addoption("--bench-device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    group.addoption("--bench-quick", action="store_true", help="CI-sized shapes and few repeats")
    group.addoption("--bench-out", default="benchmarks/results", help="results directory")


def pytest_configure(config):
    try:
        RUN["device"] = resolve_device(config.getoption("bench_device"))
    except ValueError as err:
        raise pytest.UsageError(f"--bench-device: {err}") from None
    RUN["quick"] = config.getoption("bench_quick")
    RUN["workdir"] = Path(tempfile.mkdtemp(prefix="crossjepa-bench-"))


def settings(suite: str) -> Settings:
    if suite not in RUN["settings"]:
        workdir = RUN["workdir"] / suite
        workdir.mkdir()
        RUN["settings"][suite] = Settings(RUN["device"], RUN["quick"], workdir)
    return RUN["settings"][suite]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = list(SUITES[metafunc.module.SUITE](settings(metafunc.module.SUITE)))
        ids = [f"{c.name}[{c.impl}][{c.shape}]".replace(" ", "_") for c in cases]
        metafunc.parametrize("case", cases, ids=ids)


@pytest.fixture
def bench(benchmark, request):
    """bench(case): time the case with pytest-benchmark and keep its row for the results file."""
    suite = request.module.SUITE
    s = settings(suite)

    def timer(fn, warmup, repeats):
        def call():
            fn()
            sync(s.device)

        if benchmark.disabled:  # --benchmark-disable: pytest-benchmark calls it once, untimed; the row times that
            return measure(lambda: benchmark.pedantic(call), s.device, warmup=0, repeats=1)
        with PeakMemory(s.device) as peak:
            benchmark.pedantic(call, rounds=repeats, warmup_rounds=warmup, iterations=1)
        return Timing([t * 1e3 for t in benchmark.stats.stats.data], peak.mb, peak.kind)

    def run(case):
        row = run_case(suite, case, s, timer)
        RUN["rows"].append(row)
        RUN["cases"].append(case)
        if row["median_ms"] is None:
            pytest.skip(row["note"] or "not measured")
        assert row["agrees"] is not False, f"{case.impl} disagrees with {case.references[0]}"
        return row

    return run


def pytest_sessionfinish(session):
    shutil.rmtree(RUN.pop("workdir"), ignore_errors=True)
    if not RUN["rows"]:
        return
    add_ratios(RUN["rows"], RUN["cases"])
    device, quick = RUN["device"], RUN["quick"]
    suites = list(dict.fromkeys(r["suite"] for r in RUN["rows"]))
    results = new_results(device, quick, suites, [0], "pytest-benchmark")
    out = Path(session.config.getoption("bench_out")) / results_name("pytest", device, suites, quick)
    write_results(out, results, RUN["rows"], complete=session.testsfailed == 0)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"wrote {out}")
