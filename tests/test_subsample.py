"""data/subsample.py: the one rule taking a cloud to a fixed number of points (datasets, loaders, features)."""

import numpy as np
import pytest
import torch

from crossjepa.data.subsample import draw_subset, fixed_size_batches, keyed_generator, prefix_indices, resample_indices


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


class Clouds:
    """Clouds of the given sizes, labelled by their number; `fps_ordered` as given."""

    def __init__(self, sizes, fps_ordered=False):
        gen = torch.Generator().manual_seed(0)
        self.clouds = [torch.randn(n, 3, generator=gen) for n in sizes]
        self.fps_ordered = fps_ordered

    def __len__(self):
        return len(self.clouds)

    def __getitem__(self, i):
        return {"points": self.clouds[i], "label": 10 + i}


def test_feature_clouds_follow_the_rule_in_order_whatever_the_batching():
    data = Clouds([40, 16, 25, 16, 90])
    batches = list(fixed_size_batches(data, 16, seed=3, batch_size=2))
    ids = np.concatenate([b[0] for b in batches])
    assert ids.tolist() == [0, 1, 2, 3, 4] and np.concatenate([b[2] for b in batches]).tolist() == [10, 11, 12, 13, 14]
    points = torch.cat([b[1] for b in batches])
    generator = torch.Generator().manual_seed(3)  # the 16-point clouds are used as stored and draw nothing
    for i, cloud in enumerate(data.clouds):
        index = draw_subset(generator, 1, len(cloud), 16)[0] if len(cloud) != 16 else slice(None)
        assert torch.equal(points[i], cloud[index]), i
    ((_, again, _),) = fixed_size_batches(data, 16, seed=3, batch_size=5)
    assert torch.equal(again, points)
    ((_, other, _),) = fixed_size_batches(data, 16, seed=4, batch_size=5)
    assert not torch.equal(other[0], points[0]) and torch.equal(other[1], points[1])


def test_feature_clouds_of_fps_ordered_data_are_their_prefix():
    data = Clouds([40, 10], fps_ordered=True)
    ((_, points, _),) = fixed_size_batches(data, 16, seed=7)
    assert torch.equal(points[0], data.clouds[0][:16])
    assert torch.equal(points[1], data.clouds[1][prefix_indices(10, 16)])
