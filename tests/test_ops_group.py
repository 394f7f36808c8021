"""group: centred neighbourhoods against the reference, dtypes, and gradients w.r.t. points and centers."""

import pytest
import torch

from crossjepa.ops import farthest_point_sample, group, group_reference, knn
from crossjepa.perf.inputs import cloud

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def fps_centers(points, m):
    idx = farthest_point_sample(points, m)
    return points.gather(1, idx[..., None].expand(-1, -1, 3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,k", [(1, 1, 1), (2, 2, 2), (33, 5, 33), (1000, 64, 32), (4097, 16, 100)])
def test_matches_reference(n, m, k, dtype):
    points = cloud(2, n, seed=n, dtype=dtype)
    centers = fps_centers(points, m)
    nb, idx = group(points, centers, k)
    ref_nb, ref_idx = group_reference(points, centers, k)
    assert nb.shape == (2, m, k, 3) and nb.dtype == dtype
    assert torch.equal(idx, ref_idx)
    assert torch.equal(nb, ref_nb)
    assert torch.equal(idx, knn(centers, points, k)[1])


def test_neighbourhoods_are_centred_on_their_center():
    points = cloud(3, 500, seed=21)
    centers = fps_centers(points, 10)
    nb, idx = group(points, centers, 16)
    gathered = torch.stack([points[b][idx[b]] for b in range(3)])
    torch.testing.assert_close(nb + centers[:, :, None, :], gathered)
    assert bool((nb[:, :, 0] == 0).all())  # each center is a point of the cloud, its own nearest neighbour


def test_arbitrary_centers_and_non_contiguous_input():
    g = torch.Generator().manual_seed(22)
    points = torch.randn(2, 3, 300, generator=g).transpose(1, 2)
    centers = torch.randn(2, 3, 7, generator=g).transpose(1, 2)
    nb, idx = group(points, centers, 12)
    ref_nb, ref_idx = group_reference(points.contiguous(), centers.contiguous(), 12)
    assert torch.equal(idx, ref_idx) and torch.equal(nb, ref_nb)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_match_the_reference(dtype):
    base = cloud(2, 200, seed=23, dtype=dtype)
    centers_base = fps_centers(base, 12)
    grads = []
    for fn in (group, group_reference):
        points = base.clone().requires_grad_(True)
        centers = centers_base.clone().requires_grad_(True)
        nb, _ = fn(points, centers, 20)
        weights = torch.linspace(-1, 1, nb.numel()).reshape(nb.shape).to(dtype)
        (nb * weights).float().sum().backward()
        grads.append((points.grad, centers.grad))
    tol = {} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(grads[0][0].float(), grads[1][0].float(), **tol)
    torch.testing.assert_close(grads[0][1].float(), grads[1][1].float(), **tol)


def test_gradient_of_the_sum_counts_neighbour_uses():
    points = cloud(2, 60, seed=24).requires_grad_(True)
    centers = cloud(2, 5, seed=25).requires_grad_(True)
    nb, idx = group(points, centers, 9)
    nb.sum().backward()
    uses = torch.stack([torch.bincount(idx[b].flatten(), minlength=60) for b in range(2)]).float()
    assert torch.equal(points.grad, uses[..., None].expand(-1, -1, 3))
    assert torch.equal(centers.grad, torch.full((2, 5, 3), -9.0))


def test_empty_batch():
    nb, idx = group(torch.randn(0, 10, 3), torch.randn(0, 4, 3), 3)
    assert nb.shape == (0, 4, 3, 3) and idx.shape == (0, 4, 3)
