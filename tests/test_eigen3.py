"""smallest_eigenvectors: the closed-form 3x3 solver the renderer's normals use, against torch.linalg.eigh."""

import pytest
import torch

from crossjepa.render.eigen3 import smallest_eigenvectors

E_Z = torch.tensor([0.0, 0.0, 1.0])


def random_rotations(n, gen, dtype=torch.float64):
    return torch.linalg.qr(torch.randn(n, 3, 3, generator=gen, dtype=dtype)).Q


def well_conditioned(n, gen):
    """Covariance-like matrices (float64) whose eigenvalues are at least 2% of the largest apart, at scales
    1e-6 .. 1e6."""
    gaps = 0.05 + torch.rand(n, 3, generator=gen, dtype=torch.float64)
    eigenvalues = gaps.cumsum(1) / gaps.sum(1, keepdim=True)
    scale = 10 ** (12 * torch.rand(n, 1, generator=gen, dtype=torch.float64) - 6)
    r = random_rotations(n, gen)
    return (r * (eigenvalues * scale).unsqueeze(1)) @ r.transpose(1, 2)


def angle(v, w):
    """Angle (rad) between the lines along v and w (sign ignored), accurate near zero."""
    v, w = (torch.nn.functional.normalize(x.double(), dim=-1) for x in (v, w))
    return torch.atan2(torch.linalg.cross(v, w, dim=-1).norm(dim=-1), (v * w).sum(-1).abs())


def unit_and_finite(v, tol=1e-5):
    return bool(torch.isfinite(v).all()) and bool(((v.double().norm(dim=-1) - 1).abs() < tol).all())


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-3), (torch.float64, 1e-9)])
def test_matches_eigh_on_well_conditioned_matrices(dtype, tol):
    a = well_conditioned(20000, torch.Generator().manual_seed(0)).to(dtype)
    v = smallest_eigenvectors(a)
    expected = torch.linalg.eigh(a.double()).eigenvectors[..., 0]
    assert v.dtype == dtype and v.shape == (20000, 3)
    assert angle(v, expected).max() < tol
    assert unit_and_finite(v)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_solved_in_float32(dtype):
    a = well_conditioned(5000, torch.Generator().manual_seed(1))
    a = (a / a.abs().amax((1, 2), keepdim=True)).to(dtype)  # half precision cannot hold 1e-6 .. 1e6
    v = smallest_eigenvectors(a)
    expected = torch.linalg.eigh(a.double()).eigenvectors[..., 0]
    eps = torch.finfo(dtype).eps
    assert v.dtype == dtype
    # Only the result's rounding to `dtype` separates it from eigh of the same (rounded) matrices.
    assert angle(v, expected).max() < 2 * eps
    assert unit_and_finite(v, tol=2 * eps)


def test_batch_dimensions_are_kept():
    a = well_conditioned(30, torch.Generator().manual_seed(2)).float()
    v = smallest_eigenvectors(a.reshape(2, 5, 3, 3, 3))
    assert v.shape == (2, 5, 3, 3)
    assert torch.equal(v.reshape(30, 3), smallest_eigenvectors(a))


def test_only_the_lower_triangle_is_read():
    a = well_conditioned(100, torch.Generator().manual_seed(3)).float()
    garbage = a + torch.triu(torch.randn(100, 3, 3), diagonal=1)
    assert torch.equal(smallest_eigenvectors(garbage), smallest_eigenvectors(a))


def test_planar_neighbourhoods_give_the_plane_normal():
    gen = torch.Generator().manual_seed(4)
    r = random_rotations(500, gen)
    # Points spread in the plane spanned by r's first two columns (up to 4x longer than wide), none along the
    # third.
    widths = 0.25 + torch.rand(500, 1, 2, generator=gen, dtype=torch.float64)
    spread = torch.randn(500, 16, 2, generator=gen, dtype=torch.float64) * widths
    pts = spread @ r[..., :2].transpose(1, 2)
    pts = pts - pts.mean(1, keepdim=True)
    v = smallest_eigenvectors((pts.transpose(1, 2) @ pts).float())
    assert angle(v, r[..., 2]).max() < 1e-3
    assert unit_and_finite(v)


def test_collinear_neighbourhoods_give_a_unit_vector_perpendicular_to_the_line():
    gen = torch.Generator().manual_seed(5)
    direction = torch.nn.functional.normalize(torch.randn(500, 3, generator=gen, dtype=torch.float64), dim=-1)
    pts = torch.randn(500, 16, 1, generator=gen, dtype=torch.float64) * direction.unsqueeze(1)
    pts = pts - pts.mean(1, keepdim=True)
    v = smallest_eigenvectors((pts.transpose(1, 2) @ pts).float())
    assert unit_and_finite(v)
    assert (v.double() * direction).sum(-1).abs().max() < 1e-3
    # Along an axis too (exactly zero entries).
    axis = smallest_eigenvectors(torch.diag(torch.tensor([0.0, 3.0, 0.0])))
    assert unit_and_finite(axis) and axis[1] == 0


def test_coincident_points_and_multiples_of_the_identity_give_e_z():
    a = torch.stack([torch.zeros(3, 3), torch.eye(3), 1e-30 * torch.eye(3), 7e20 * torch.eye(3)])
    assert torch.equal(smallest_eigenvectors(a), E_Z.expand(4, 3))


def test_near_degenerate_and_tiny_matrices_stay_unit_and_finite():
    gen = torch.Generator().manual_seed(6)
    r = random_rotations(3000, gen)
    eigenvalues = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64).repeat(1000, 1)
    eigenvalues = eigenvalues + 1e-7 * torch.rand(3000, 3, generator=gen, dtype=torch.float64)
    a = (r * eigenvalues.unsqueeze(1)) @ r.transpose(1, 2)
    for scale in (1.0, 1e-35, 1e35):
        v = smallest_eigenvectors((a * scale).float())
        assert unit_and_finite(v), scale
    # Two ~0 eigenvalues: still perpendicular to the third axis; one ~0: still that axis.
    v = smallest_eigenvectors(a.float())
    assert (v[0::3].double() * r[0::3, :, 2]).sum(-1).abs().max() < 1e-3
    assert angle(v[1::3], r[1::3, :, 0]).max() < 1e-3


def test_ten_million_matrices_in_one_call(one_thread):
    base = well_conditioned(1000, torch.Generator().manual_seed(7)).float()
    v = smallest_eigenvectors(base.repeat(10000, 1, 1))  # 10M: past the batch sizes where cuSOLVER failed
    assert v.shape == (10_000_000, 3) and bool(torch.isfinite(v).all())
    one = smallest_eigenvectors(base)
    assert (v.view(10000, 1000, 3) - one).abs().max() < 1e-6  # chunking changes nothing


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="matrices"):
        smallest_eigenvectors(torch.zeros(4, 3, 2))
    with pytest.raises(ValueError, match="matrices"):
        smallest_eigenvectors(torch.zeros(3))
    with pytest.raises(TypeError, match="matrices"):
        smallest_eigenvectors(torch.zeros(4, 3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="matrices"):
        smallest_eigenvectors([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_on_a_batch_cusolver_failed_on():
    a = well_conditioned(1000, torch.Generator().manual_seed(8)).float().repeat(3000, 1, 1)  # 3M
    v = smallest_eigenvectors(a.cuda()).cpu()
    assert angle(v, smallest_eigenvectors(a)).max() < 1e-4
    assert unit_and_finite(v)
