"""`crossjepa bench`: run the suites on one device, print a table, write
OUT/bench_<device>[_<suites>][_quick].json (suites named when a subset runs: runs of different suites keep
separate files).

Every row records its load level: the number of background processes keeping a core busy while it ran (0 for
`crossjepa bench`; benchmarks/under_load.py runs the suites at several levels into one file).
Each case's calls stop once they have used `--case-budget` seconds (crossjepa.perf.timing.measure; the row's
repeats and note say how many ran), and the torch.compile cases run only with `--compile`, so a run's length
is bounded by its number of cases. A line on stderr reports every case as it finishes, and the JSON is
rewritten (atomically) after every case with "complete": false until the last one finishes, so a run that is
cut short still leaves what it measured. benchmarks/conftest.py writes the same schema through `new_results`
and `write_results`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path

from ..atomic import write_json
from .cli_args import SUITES, BenchConfig, parse_suites
from .env import describe, environment
from .suites import Settings, run_suite

SCHEMA = "crossjepa-bench/1"


def _si(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _verdict(r: dict) -> str:
    ratio = ", ".join(f"{x:.2f}x vs {ref}" for ref, x in (r.get("ratios") or {}).items())
    if r.get("meets_target") is not None:
        ratio += f" (target {r['target']:g}x {'met' if r['meets_target'] else 'NOT met'})"
    if r.get("agrees") is False:
        ratio += f" DISAGREES with {r['ratio_vs'] or 'crossjepa'}"  # a peer's row is checked against ours
    return ratio


def format_table(rows: list[dict]) -> str:
    """Rows grouped by benchmark: a header with the shape and load, then one line per implementation."""
    head = (
        f"  {'impl':<26} {'backend':<34} {'median ms':>9} {'min':>7} {'max':>7} {'throughput':>19} "
        f"{'peak MB':>8}  speed-up"
    )
    lines, last = [], None
    for r in rows:
        key = (r["suite"], r["name"], r["shape"], r.get("load"))
        if key != last:
            last = key
            load = f", load {r['load']}" if r.get("load") else ""
            lines += ["", f"[{r['suite']}] {r['name']}  ({r['shape']}{load})", head]
        if r["median_ms"] is None:
            lines.append(f"  {r['impl']:<26} {r['backend'][:34]:<34} not measured: {r['note'] or 'unavailable'}")
            continue
        tput = f"{_si(r['throughput'])} {r['unit']}"
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        lines.append(
            f"  {r['impl']:<26} {r['backend'][:34]:<34} {_ms(r['median_ms']):>9} {_ms(r['min_ms']):>7} "
            f"{_ms(r['max_ms']):>7} {tput:>19} {mem:>8}  {_verdict(r)}".rstrip()
        )
    return "\n".join(lines)


def format_load_summary(rows: list[dict]) -> str:
    """One line per compared pair: its speed-up over the reference at every load level, side by side."""
    pairs: dict[tuple, dict] = {}
    for r in rows:
        if r["ratio_vs"] is not None:
            pairs.setdefault((r["suite"], r["name"], r["shape"], r["impl"], r["ratio_vs"]), {})[r["load"]] = r
    lines = ["", "speed-up over the reference by load (background spinning processes):"]
    for (suite, name, shape, impl, ref), by_load in pairs.items():
        cells = "  ".join(
            f"load {load}: " + ("-" if r["ratio"] is None else f"{r['ratio']:.2f}x") for load, r in by_load.items()
        )
        target = next(iter(by_load.values()))["target"]
        lines.append(
            f"  [{suite}] {name} ({shape}) {impl} vs {ref}{f' (target {target:g}x)' if target else ''}:  {cells}"
        )
    return "\n".join(lines)


def _finite(rows: list[dict]) -> list[dict]:
    """JSON has no NaN/inf: such a value (a zero-time measurement) is stored as null."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return {k: clean(x) for k, x in v.items()} if isinstance(v, dict) else v

    return [clean(r) for r in rows]


def results_name(runner: str, device, suites: list[str], quick: bool) -> str:
    subset = "" if set(suites) == set(SUITES) else "_" + "_".join(suites)
    return f"{runner}_{device.type}{subset}{'_quick' if quick else ''}.json"


def new_results(
    device, quick: bool, suites: list[str], loads: list[int], runner: str, options: dict | None = None
) -> dict:
    return {
        "schema": SCHEMA,
        "runner": runner,
        "device": str(device),
        "quick": quick,
        "suites": suites,
        "loads": loads,
        "options": options or {},
        "complete": False,
        "env": environment(device),
        "wall_s": {},
        "rows": [],
    }


def write_results(path: Path, results: dict, rows: list[dict], complete: bool = False) -> Path:
    """Write `results` with `rows` as its rows (all of them so far)."""
    results["rows"] = _finite(rows)
    results["complete"] = complete
    return write_json(path, results)


def progress_line(row: dict, seconds: float) -> str:
    """One case as it finishes: what was timed, its median and how many repeats ran."""
    head = f"[{row['suite']}] {row['name']} | {row['impl']} | {row['shape']}"
    if row["median_ms"] is None:
        return f"{head}: not measured: {row['note'] or 'unavailable'} ({seconds:.1f} s)"
    runs = f"{row['repeats']} repeat{'s' * (row['repeats'] != 1)}"
    return f"{head}: median {_ms(row['median_ms'])} ms of {runs} ({seconds:.1f} s)"


def run_bench(
    device,
    suites: list[str],
    quick: bool,
    out: Path,
    loads: list[int] = (0,),
    echo=print,
    case_budget_s: float | None = None,
    compile: bool = False,
    progress=lambda line: print(line, file=sys.stderr, flush=True),
    background=None,
) -> Path:
    """Run `suites` once per level of `loads`, each inside `background(level)`, a context manager that keeps that
    many cores busy (benchmarks/under_load.py); without one, `loads` must be (0,)."""
    if background is None and list(loads) != [0]:
        raise ValueError(f"loads: expected (0,) without a background load to run them beside, got {loads}")
    options = {"case_budget_s": case_budget_s, "compile": compile}
    results = new_results(device, quick, suites, list(loads), "crossjepa bench", options)
    path = Path(out) / results_name("bench", device, suites, quick)
    echo(f"crossjepa bench on {describe(results['env'])}{' (quick)' if quick else ''}")
    rows: list[dict] = []
    last = [time.perf_counter()]

    def on_row(row: dict) -> None:
        now = time.perf_counter()
        progress(progress_line(row, now - last[0]))
        last[0] = now
        rows.append(row)
        write_results(path, results, rows)

    with tempfile.TemporaryDirectory(prefix="crossjepa-bench-") as tmp:
        for load in loads:
            with background(load) if background else contextlib.nullcontext():
                for name in suites:
                    workdir = Path(tmp) / f"{name}-load{load}"
                    workdir.mkdir()
                    t0 = time.perf_counter()
                    settings = Settings(device, quick, workdir, load=load, budget_s=case_budget_s, compile=compile)
                    suite_rows = run_suite(name, settings, on_row)  # the same dicts, now with their ratios
                    results["wall_s"][f"{name} load {load}"] = round(time.perf_counter() - t0, 2)
                    echo(format_table(suite_rows))
                    write_results(path, results, rows)
    write_results(path, results, rows, complete=True)
    if len(loads) > 1:
        echo(format_load_summary(results["rows"]))
    echo(f"\nwrote {path}")
    return path


def run_bench_command(cfg: BenchConfig, quiet: bool = False, loads=(0,), background=None) -> Path:
    """`crossjepa bench` (and benchmarks/under_load.py, which passes `loads` and their `background`)."""
    from ..device import resolve_device

    progress = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    return run_bench(
        resolve_device(cfg.device),
        parse_suites(cfg.suite),
        cfg.quick,
        Path(cfg.out),
        loads,
        case_budget_s=cfg.case_budget or None,
        compile=cfg.compile,
        progress=progress,
        background=background,
    )
