"""`crossjepa bench` beside background load: every suite runs once per load level, with that many processes each
keeping one core busy, every row recording its level, so quiet and busy figures sit in one results file (a busy
machine is the normal case on shared runners).

    python benchmarks/under_load.py --load 0,1,2 --device cpu --suite ops    # and any other `crossjepa bench` flag

The spinning processes are killed when a level ends, however it ends: an error, Ctrl-C, or SIGTERM (turned into
SystemExit while they run, so the cleanup still runs).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading

from crossjepa.config_flags import add_config_flags, config_from_args
from crossjepa.perf.bench import run_bench_command
from crossjepa.perf.cli_args import BenchConfig

SPIN = "while True: pass"


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def spinners(count: int):
    """`count` processes each spinning a core while the block runs; yields their ids."""
    if count < 0:
        raise ValueError(f"--load: expected a count of spinning processes >= 0, got {count}")
    procs: list[subprocess.Popen] = []
    # Signal handlers install only in the main thread; elsewhere SIGTERM would leave the spinners running.
    trap = count > 0 and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if trap else None
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", SPIN],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        if trap:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def parse_loads(text: str) -> list[int]:
    try:
        loads = [int(x) for x in text.split(",")]
    except ValueError:
        loads = []
    if not loads or min(loads) < 0:
        raise ValueError(f"--load: expected comma-separated counts of spinning processes >= 0, got {text!r}")
    return list(dict.fromkeys(loads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="under_load.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", default="0,1,2", help="comma-separated numbers of spinning processes (0,1,2)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-case progress lines")
    add_config_flags(parser, BenchConfig())
    args = parser.parse_args(argv)
    try:
        loads = parse_loads(args.load)
        run_bench_command(config_from_args(BenchConfig, args), args.quiet, loads, spinners)
    except ValueError as err:
        print(f"under_load.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
