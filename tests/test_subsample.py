"""data/subsample.py: the one rule taking a cloud to a fixed number of points (datasets, loaders, features)."""

import numpy as np
import pytest
import torch

from crossjepa.data.base import resample_indices
from crossjepa.data.subsample import draw_subset, keyed_generator, prefix_indices, subsample


@pytest.mark.parametrize("stored, wanted", [(100, 64), (64, 64), (30, 64), (1, 5)])
def test_a_random_subset_has_no_repeats_or_balanced_ones(stored, wanted):
    idx = draw_subset(keyed_generator((0, 1)), 8, stored, wanted)
    assert idx.shape == (8, wanted) and idx.dtype == torch.int64
    for row in idx:
        counts = torch.bincount(row, minlength=stored)
        assert counts.max() - counts.min() <= 1 and counts.sum() == wanted
        assert int(counts.min()) == wanted // stored


def test_the_same_generator_state_gives_the_same_indices_and_another_key_others():
    a = draw_subset(keyed_generator((3, 0, 7)), 4, 500, 100)
    assert torch.equal(a, draw_subset(keyed_generator((3, 0, 7)), 4, 500, 100))
    assert not torch.equal(a, draw_subset(keyed_generator((3, 0, 8)), 4, 500, 100))


def test_fps_ordered_clouds_keep_their_prefix():
    assert prefix_indices(10, 4).tolist() == [0, 1, 2, 3]
    assert prefix_indices(3, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert resample_indices(10, 4, (0, 0), prefix=True).tolist() == [0, 1, 2, 3]


def test_datasets_draw_from_seed_and_object_with_the_same_rule():
    got = resample_indices(50, 20, (5, 2), prefix=False)
    np.testing.assert_array_equal(got, draw_subset(keyed_generator((5, 2)), 1, 50, 20)[0].numpy())
    assert resample_indices(20, 20, (5, 2), prefix=False) is None


def test_features_subsample_rows_of_the_cloud_with_the_rule():
    points = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    out = subsample(points, 16, torch.Generator().manual_seed(1))
    assert torch.equal(out, points[draw_subset(torch.Generator().manual_seed(1), 1, 40, 16)[0]])
    with pytest.raises(ValueError, match="points: expected a non-empty cloud"):
        subsample(torch.zeros(0, 3), 4, torch.Generator())
