"""The tokenizer (the training step's point ops) never reaches the kernels' host-side value checks: on CUDA each
is a device-to-host copy, a sync per op. crossjepa.ops validates in Python the values it did not build itself
and calls crossjepa._C with check_values=False; _C counts the value checks it runs (value_check_count), which
makes this visible on a CPU."""

import pytest
import torch

from crossjepa import ops
from crossjepa.models.config import TokenizerConfig
from crossjepa.models.tokenizer import Tokenizer
from crossjepa.ops import dispatch

C = dispatch._load_extension()[0]
pytestmark = pytest.mark.skipif(C is None, reason="crossjepa._C not built")


@pytest.mark.parametrize("fps_start", ["zero", "random"])
def test_tokenizer_runs_no_value_check(fps_start):
    cfg = TokenizerConfig(
        num_points=256, num_groups=16, group_size=8, fps_start=fps_start, local_hidden=8, local_out=8, global_hidden=8
    )
    tokenizer = Tokenizer(cfg, width=16)
    points = torch.randn(3, 256, 3)
    before = C.value_check_count()
    tokens, centers = tokenizer(points, torch.Generator().manual_seed(0))
    tokens.sum().backward()  # the gather's backward too
    assert C.value_check_count() == before
    assert tokens.shape == (3, 16, 16) and centers.shape == (3, 16, 3)


def test_the_counter_sees_the_checks_the_ops_skip():
    """Control: the same calls made directly (check_values defaults to True) are counted, one per call, and
    give the same results."""
    points = torch.randn(2, 64, 3)
    lengths = torch.full((2,), 64, dtype=torch.int64)
    start = torch.zeros(2, dtype=torch.int64)
    before = C.value_check_count()
    idx = C.fps(points, lengths, start, 8)
    centers = torch.gather(points, 1, idx[..., None].expand(-1, -1, 3))
    _, nn = C.knn(centers, points, lengths, 4)
    neighbourhoods = C.group_gather(points, centers, nn)
    assert C.value_check_count() == before + 3
    assert torch.equal(idx, ops.farthest_point_sample(points, 8))
    got, got_idx = ops.group(points, centers, 4)
    assert torch.equal(got_idx, nn) and torch.equal(got, neighbourhoods)
    assert C.value_check_count() == before + 3
