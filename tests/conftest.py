"""Shared test fixtures."""

import random
import zlib

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def seeded(request):
    """Every test draws from generators seeded by its own id: inputs differ between tests, yet a failure
    reproduces exactly when the test runs alone or in another order."""
    seed = zlib.crc32(request.node.nodeid.encode())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and on a machine whose cores are busy far faster than on
    several."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
