"""Run by test_cache_torchrun, under torchrun or alone: the `crossjepa` command line with the cache's chunks made
small (CHUNK_SIZE objects), so that a test-sized dataset has several to deal out; with KILL_RANK=R, rank R
kills itself (SIGKILL) as it starts its second chunk."""

import os
import signal
import sys

import crossjepa.teacher.cache as cache_module
from crossjepa.cli import main

cache_module.build_cache.__kwdefaults__["chunk_size"] = int(os.environ["CHUNK_SIZE"])
if os.environ.get("KILL_RANK") == os.environ.get("RANK", "0"):
    compute, started = cache_module._compute_chunk, []

    def compute_then_die(*args, **kwargs):
        started.append(1)
        if len(started) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return compute(*args, **kwargs)

    cache_module._compute_chunk = compute_then_die
sys.exit(main(sys.argv[1:]))
