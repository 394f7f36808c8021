"""The eigenvector of the smallest eigenvalue of many symmetric 3x3 matrices, in closed form.

torch.linalg.eigh batches through cuSOLVER on the GPU, whose batched solver fails on large batches
(CUSOLVER_STATUS_INTERNAL_ERROR) — and a render needs one 3x3 covariance per point, millions per batch. This is
elementwise torch: no batch limit, any device.

Method: each matrix is scaled by its largest absolute entry, its eigenvalues come from the trigonometric
solution of the characteristic cubic, and the eigenvector of an eigenvalue that is well separated from the
other two is the largest cross product of two rows of (A - lambda I). The cubic tells which end of the spectrum
is isolated: if it is the smallest eigenvalue, its eigenvector is computed directly; otherwise the largest
eigenvalue's eigenvector is, and the smallest one is found in the plane perpendicular to it from a 2x2
problem. That keeps every step well conditioned, whatever the neighbourhood:
- planar (one eigenvalue ~0): the plane's normal;
- collinear (two eigenvalues ~0): a unit vector perpendicular to the line;
- all eigenvalues equal (zero matrix, duplicate points, isotropic): (0, 0, 1).
"""

from __future__ import annotations

import math

import torch

_CHUNK = 1 << 20  # matrices per pass: bounds the temporaries (~100 bytes per matrix each) on any device
_ISOTROPIC_EPS = 16  # eigenvalue spread, in units of the working dtype's eps times the largest entry, below
# which the matrix counts as a multiple of I (every vector is an eigenvector; rounding decides nothing)


def smallest_eigenvectors(matrices: torch.Tensor) -> torch.Tensor:
    """Unit eigenvectors (..., 3) of the smallest eigenvalue of symmetric matrices (..., 3, 3).

    The sign is arbitrary (as with torch.linalg.eigh). Computed in float32 for float16/bfloat16/float32 input
    (float64 stays float64) and returned in the input's dtype. Only the lower triangle is read. Entries must be
    finite (the renderer's covariances are: clouds are checked where they enter crossjepa).
    """
    if not isinstance(matrices, torch.Tensor):
        raise TypeError(f"matrices: expected a torch.Tensor, got {type(matrices).__name__}")
    if matrices.ndim < 2 or matrices.shape[-2:] != (3, 3):
        raise ValueError(f"matrices: expected shape (..., 3, 3), got {tuple(matrices.shape)}")
    if not matrices.is_floating_point():
        raise TypeError(f"matrices: expected a floating-point tensor, got {matrices.dtype}")
    work = torch.float64 if matrices.dtype == torch.float64 else torch.float32
    flat = matrices.reshape(-1, 3, 3)
    out = torch.empty(flat.shape[0], 3, dtype=matrices.dtype, device=matrices.device)
    for start in range(0, flat.shape[0], _CHUNK):
        part = flat[start : start + _CHUNK].to(work)
        out[start : start + _CHUNK] = _solve(part).to(matrices.dtype)
    return out.reshape(*matrices.shape[:-1])


def _null_vector(a00, a01, a02, a11, a12, a22, lam):
    """Unit vector spanning the null space of A - lam I (lam an eigenvalue of multiplicity one): the column of
    the adjugate of A - lam I (rank one, proportional to v v^T) with the largest diagonal entry, i.e. the
    largest cross product of two rows."""
    d0, d1, d2 = a00 - lam, a11 - lam, a22 - lam
    m00, m11, m22 = d1 * d2 - a12 * a12, d0 * d2 - a02 * a02, d0 * d1 - a01 * a01
    m01, m02, m12 = a02 * a12 - a01 * d2, a01 * a12 - a02 * d1, a01 * a02 - d0 * a12
    second = m11.abs() > m00.abs()
    third = m22.abs() > torch.where(second, m11, m00).abs()
    v = (
        torch.where(third, m02, torch.where(second, m01, m00)),
        torch.where(third, m12, torch.where(second, m11, m01)),
        torch.where(third, m22, torch.where(second, m12, m02)),
    )
    return _normalized(v)


def _normalized(v):
    x, y, z = v
    inv = (x * x + y * y + z * z).clamp_min(torch.finfo(x.dtype).tiny).rsqrt()
    return x * inv, y * inv, z * inv


def _dot(v, w):
    return v[0] * w[0] + v[1] * w[1] + v[2] * w[2]


def _cross(v, w):
    return v[1] * w[2] - v[2] * w[1], v[2] * w[0] - v[0] * w[2], v[0] * w[1] - v[1] * w[0]


def _perpendicular(v):
    """A unit vector perpendicular to each unit vector v, zeroing the smaller of v's x and y first."""
    x, y, z = v
    use_x = x.abs() > y.abs()
    zero = torch.zeros_like(x)
    return _normalized((torch.where(use_x, -z, zero), torch.where(use_x, zero, z), torch.where(use_x, x, -y)))


def _solve(a: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) -> (N, 3) in a's dtype. Every quantity is a tuple of contiguous (N,) tensors (one per
    component): elementwise ops on those are what both the CPU and the GPU run fastest."""
    lower = a[:, [0, 1, 2, 1, 2, 2], [0, 0, 0, 1, 1, 2]]  # a00 a01 a02 a11 a12 a22, (N, 6)
    scale = lower.abs().amax(1, keepdim=True)
    a00, a01, a02, a11, a12, a22 = (lower / torch.where(scale > 0, scale, 1.0)).T.contiguous().unbind(0)

    # Eigenvalues of B = (A - q I) / p are 2 cos(phi + 2 pi j / 3), phi = acos(det(B) / 2) / 3.
    q = (a00 + a11 + a22) / 3
    b00, b11, b22 = a00 - q, a11 - q, a22 - q
    p = ((b00 * b00 + b11 * b11 + b22 * b22 + 2 * (a01 * a01 + a02 * a02 + a12 * a12)) / 6).sqrt()
    isotropic = p <= _ISOTROPIC_EPS * torch.finfo(a.dtype).eps
    inv_p = 1 / torch.where(isotropic, 1.0, p)
    b00, b11, b22, b01, b02, b12 = (t * inv_p for t in (b00, b11, b22, a01, a02, a12))
    half_det = (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02) + b02 * (b01 * b12 - b11 * b02)) / 2
    phi = torch.acos(half_det.clamp(-1, 1)) / 3
    smallest_isolated = half_det < 0
    # The isolated end of the spectrum: the smallest eigenvalue if half_det < 0, else the largest.
    lam = q + 2 * p * torch.cos(torch.where(smallest_isolated, phi + 2 * math.pi / 3, phi))
    v = _null_vector(a00, a01, a02, a11, a12, a22, lam)

    # Largest isolated: the smallest eigenvector lies in the plane perpendicular to v, where A restricted to
    # the basis (u, w) is [[m00, m01], [m01, m11]]; its smaller eigenvector is at angle theta + pi/2 with
    # theta = atan2(2 m01, m00 - m11) / 2 (for m = c I, w).
    u = _perpendicular(v)
    w = _cross(v, u)
    au = (
        a00 * u[0] + a01 * u[1] + a02 * u[2],
        a01 * u[0] + a11 * u[1] + a12 * u[2],
        a02 * u[0] + a12 * u[1] + a22 * u[2],
    )
    aw = (
        a00 * w[0] + a01 * w[1] + a02 * w[2],
        a01 * w[0] + a11 * w[1] + a12 * w[2],
        a02 * w[0] + a12 * w[1] + a22 * w[2],
    )
    theta = torch.atan2(2 * _dot(u, aw), _dot(u, au) - _dot(w, aw)) / 2
    sin, cos = torch.sin(theta), torch.cos(theta)
    out = torch.stack([torch.where(smallest_isolated, vi, cos * wi - sin * ui) for vi, ui, wi in zip(v, u, w)], 1)

    # Rounding can leave a near-multiple of I just past the threshold with a vanishing adjugate: such a
    # matrix, like a true multiple of I, gets the fixed vector.
    norm = out.square().sum(1, keepdim=True).sqrt()
    fixed = isotropic.unsqueeze(1) | ~(norm > 0.5)  # also catches NaN
    return torch.where(fixed, out.new_tensor([0.0, 0.0, 1.0]), out / torch.where(fixed, 1.0, norm))
