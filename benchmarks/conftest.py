"""Benchmark session setup, run before any benchmark module imports torch.

OMP_WAIT_POLICY=PASSIVE unless already set: with libgomp's default busy-wait, every parallel region on a
machine whose cores are shared with other processes stalls for whole scheduler ticks (on the shared 2-core
box, a 2-thread region took ~8 ms where one thread took 0.7 ms; torch's own ops, hence the cdist+topk peer,
stall the same way). The policy is read once, when torch loads libgomp, and applies to ours and the peers.
"""

import os
import sys
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "torch" in sys.modules:
    warnings.warn("torch was imported before benchmarks/conftest.py: OMP_WAIT_POLICY may not apply", stacklevel=1)

ENV_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "CROSSJEPA_DISABLE_AVX2")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the threading environment the run had (save_results.py copies it into the results)."""
    machine_info["env"] = {name: os.environ.get(name) for name in ENV_VARS}
