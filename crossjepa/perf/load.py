"""Background load for timing under contention: processes that each keep one core busy.

`spinners(n)` starts n `python -c "while True: pass"` processes and kills them when the block ends, however
it ends: an error, Ctrl-C, or SIGTERM (turned into SystemExit while spinners run, so the cleanup still runs).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading

SPIN = "while True: pass"


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def spinners(count: int):
    """Yields the spinner processes' ids."""
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
