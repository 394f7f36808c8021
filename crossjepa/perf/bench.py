"""`crossjepa bench`: run the suites on one device, print a table, write OUT/bench_<device>[_quick].json.

The JSON is rewritten (atomically) after every suite with "complete": false until the last one finishes, so
a run that is cut short still leaves the suites it measured.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

from .cli_args import SUITES
from .env import describe, environment
from ..atomic import write_json
from .suites import Settings, run_suite

SCHEMA = "crossjepa-bench/1"


def parse_suites(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SUITES]
    if not names or unknown:
        raise ValueError(f"--suite: expected a comma-separated list from {','.join(SUITES)}, got {text!r}")
    return list(dict.fromkeys(names))


def _si(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3g}" if value < 100 else f"{value:.0f}"


def format_table(rows: list[dict]) -> str:
    """Rows grouped by benchmark: a header with the shape, then one line per implementation."""
    head = f"  {'impl':<26} {'backend':<34} {'median ms':>9} {'min':>7} {'max':>7} {'throughput':>19} " \
           f"{'peak MB':>8}  speed-up"
    lines, last = [], None
    for r in rows:
        if (r["suite"], r["name"], r["shape"]) != last:
            last = (r["suite"], r["name"], r["shape"])
            lines += ["", f"[{r['suite']}] {r['name']}  ({r['shape']})", head]
        if r["median_ms"] is None:
            lines.append(f"  {r['impl']:<26} {r['backend'][:34]:<34} not measured: {r['note'] or 'unavailable'}")
            continue
        tput = f"{_si(r['throughput'])} {r['unit']}"
        ratio = ", ".join(f"{x:.2f}x vs {ref}" for ref, x in (r.get("ratios") or {}).items())
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        lines.append(f"  {r['impl']:<26} {r['backend'][:34]:<34} {_ms(r['median_ms']):>9} {_ms(r['min_ms']):>7} "
                     f"{_ms(r['max_ms']):>7} {tput:>19} {mem:>8}  {ratio}".rstrip())
    return "\n".join(lines)


def _finite(rows: list[dict]) -> list[dict]:
    """JSON has no NaN/inf: such a value (a zero-time measurement) is stored as null."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return {k: clean(x) for k, x in v.items()} if isinstance(v, dict) else v
    return [clean(r) for r in rows]


def run_bench(device, suites: list[str], quick: bool, out: Path, echo=print) -> Path:
    env = environment(device)
    path = Path(out) / f"bench_{device.type}{'_quick' if quick else ''}.json"
    echo(f"crossjepa bench on {describe(env)}{' (quick)' if quick else ''}")
    payload = {"schema": SCHEMA, "device": str(device), "quick": quick, "suites": suites, "complete": False,
               "env": env, "wall_s": {}, "rows": []}
    with tempfile.TemporaryDirectory(prefix="crossjepa-bench-") as tmp:
        for name in suites:
            workdir = Path(tmp) / name
            workdir.mkdir()
            t0 = time.perf_counter()
            rows = run_suite(name, Settings(device, quick, workdir))
            payload["wall_s"][name] = round(time.perf_counter() - t0, 2)
            payload["rows"] += _finite(rows)
            echo(format_table(rows))
            write_json(path, payload)
    payload["complete"] = True
    write_json(path, payload)
    echo(f"\nwrote {path}")
    return path


def run_bench_command(args) -> Path:
    from ..device import resolve_device

    suites = parse_suites(args.suite)
    return run_bench(resolve_device(args.device), suites, args.quick, Path(args.out))
