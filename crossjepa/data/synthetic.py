"""Procedural labelled shapes: the default dataset, needs no download.

Each class is a different geometry (not a rescaled copy of another), sampled as points on its surface with
density uniform in area. Every object then gets its own shape parameters, anisotropic scale, smooth
deformation (taper, bend, wobble), yaw and a small tilt, and sampling noise, and is normalised to the unit
sphere (centroid at the origin, farthest point at distance 1). Object i of a split is generated from the seed
(seed, split, i) alone, so any object can be produced on its own, in any order, on any worker. World is y-up.
"""

import hashlib
import json
import math

import numpy as np
import torch

from ..validate import check_choice, check_int

_VERSION = 1
_SPLITS = {"train": 0, "test": 1}


def _sphere(rng, n):
    p = rng.normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def _pick(rng, weights, n):
    """n indices drawn with probability proportional to `weights`."""
    cdf = np.cumsum(weights)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)


def _boxes(rng, n, boxes):
    """Surface of a union of axis-aligned boxes [(centre, half_size), ...]; faces inside another box dropped."""
    centres, halves = (np.array(a, dtype=np.float64) for a in zip(*boxes))
    face_area = 4 * halves[:, [1, 0, 0]] * halves[:, [2, 2, 1]]  # area of the two faces normal to x, y, z
    m = int(n * 1.5) + 16 if len(boxes) > 1 else n
    flat = _pick(rng, face_area.reshape(-1), m)
    box, axis = flat // 3, flat % 3
    p = rng.uniform(-1, 1, (m, 3)) * halves[box]
    p[np.arange(m), axis] = np.where(rng.random(m) < 0.5, -1.0, 1.0) * halves[box, axis]
    p += centres[box]
    if len(boxes) > 1:
        inside = (np.abs(p[:, None] - centres[None]) < halves[None] - 1e-9).all(-1)
        inside[np.arange(m), box] = False
        p = p[~inside.any(1)]  # still independent draws, so the first n are a fair sample
    return p[:n] if len(p) >= n else np.concatenate([p, p[rng.integers(0, len(p), n - len(p))]])


def _triangles(rng, n, tris):
    tris = np.asarray(tris, dtype=np.float64)
    area = np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)
    t = tris[_pick(rng, area, n)]
    s, u = np.sqrt(rng.random((n, 1))), rng.random((n, 1))
    return (1 - s) * t[:, 0] + s * (1 - u) * t[:, 1] + s * u * t[:, 2]


def _disc(rng, n, r):
    rho, phi = r * np.sqrt(rng.random(n)), rng.uniform(0, 2 * math.pi, n)
    return np.stack((rho * np.cos(phi), rho * np.sin(phi)), 1)


def _cylinder(rng, n, r, h):
    """Closed cylinder, axis z, radius r, half-height h."""
    side, cap = 4 * math.pi * r * h, math.pi * r * r
    on_side = rng.random(n) < side / (side + 2 * cap)
    phi = rng.uniform(0, 2 * math.pi, n)
    p = np.stack((r * np.cos(phi), r * np.sin(phi), rng.uniform(-h, h, n)), 1)
    p[~on_side, :2] = _disc(rng, int((~on_side).sum()), r)
    p[~on_side, 2] = np.where(rng.random(int((~on_side).sum())) < 0.5, -h, h)
    return p


def sphere(rng, n):
    return _sphere(rng, n)


def cube(rng, n):
    return _boxes(rng, n, [((0, 0, 0), (1, 1, 1))])


def cylinder(rng, n):
    return _cylinder(rng, n, 1.0, rng.uniform(0.6, 1.4))


def cone(rng, n):
    r, h = 1.0, rng.uniform(1.2, 2.2)
    lateral, base = math.pi * r * math.hypot(r, h), math.pi * r * r
    t = np.sqrt(rng.random(n))  # distance from the apex as a fraction: area grows with t^2
    phi = rng.uniform(0, 2 * math.pi, n)
    p = np.stack((r * t * np.cos(phi), r * t * np.sin(phi), h / 2 - h * t), 1)
    on_base = rng.random(n) < base / (lateral + base)
    p[on_base, :2], p[on_base, 2] = _disc(rng, int(on_base.sum()), r), -h / 2
    return p


def torus(rng, n):
    big, small = 1.0, rng.uniform(0.2, 0.45)
    # Area element ~ (R + r cos v): draw v by rejection from an oversample.
    v = rng.uniform(0, 2 * math.pi, 2 * n + 16)
    v = v[rng.random(v.size) * (big + small) < big + small * np.cos(v)][:n]
    v = np.resize(v, n)
    u = rng.uniform(0, 2 * math.pi, n)
    ring = big + small * np.cos(v)
    return np.stack((ring * np.cos(u), ring * np.sin(u), small * np.sin(v)), 1)


def capsule(rng, n):
    r, h = rng.uniform(0.35, 0.5), rng.uniform(0.6, 1.0)
    side, caps = 4 * math.pi * r * h, 4 * math.pi * r * r
    p = _sphere(rng, n) * r
    p[:, 2] += np.sign(p[:, 2]) * h
    on_side = rng.random(n) < side / (side + caps)
    phi = rng.uniform(0, 2 * math.pi, int(on_side.sum()))
    p[on_side] = np.stack((r * np.cos(phi), r * np.sin(phi), rng.uniform(-h, h, phi.size)), 1)
    return p


def pyramid(rng, n):
    h = rng.uniform(1.2, 2.0)
    a, b, c, d = (-1, -1, -h / 2), (1, -1, -h / 2), (1, 1, -h / 2), (-1, 1, -h / 2)
    top = (0, 0, h / 2)
    return _triangles(rng, n, [(a, b, c), (a, c, d), (a, b, top), (b, c, top), (c, d, top), (d, a, top)])


def helix(rng, n):
    radius, turns, tube = 0.7, rng.uniform(2.5, 4.0), rng.uniform(0.08, 0.15)
    t = rng.uniform(0, 2 * math.pi * turns, n)  # constant speed curve: uniform t is uniform arc length
    rise = 2.0 / (2 * math.pi * turns)
    centre = np.stack((radius * np.cos(t), radius * np.sin(t), rise * t - 1.0), 1)
    tangent = np.stack((-radius * np.sin(t), radius * np.cos(t), np.full(n, rise)), 1)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack((-np.cos(t), -np.sin(t), np.zeros(n)), 1)
    binormal = np.cross(tangent, normal)
    phi = rng.uniform(0, 2 * math.pi, (n, 1))
    return centre + tube * (np.cos(phi) * normal + np.sin(phi) * binormal)


def _legs(x, y, leg, bottom, top):
    h = (top - bottom) / 2
    return [((sx * x, sy * y, bottom + h), (leg, leg, h)) for sx in (-1, 1) for sy in (-1, 1)]


def table(rng, n):
    w, d, leg, height = 1.0, rng.uniform(0.55, 1.0), rng.uniform(0.05, 0.09), rng.uniform(0.7, 1.1)
    top = [((0, 0, height / 2), (w, d, 0.06))]
    return _boxes(rng, n, top + _legs(w - 2 * leg, d - 2 * leg, leg, -height / 2, height / 2))


def chair(rng, n):
    w, leg, legs_h, back_h = 0.6, rng.uniform(0.04, 0.07), rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.9)
    seat = [((0, 0, 0), (w, w, 0.05))]
    back = [((0, -w + 0.05, back_h / 2), (w, 0.05, back_h / 2))]
    return _boxes(rng, n, seat + back + _legs(w - leg, w - leg, leg, -legs_h, 0))


def l_shape(rng, n):
    a, b, depth = rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.5)
    return _boxes(rng, n, [((-1 + a, 0, 0), (a, 1, depth)), ((0, -1 + b, 0), (1, b, depth))])


def cross(rng, n):
    a, b, depth = rng.uniform(0.15, 0.3), rng.uniform(0.15, 0.3), rng.uniform(0.15, 0.4)
    return _boxes(rng, n, [((0, 0, 0), (1, a, depth)), ((0, 0.2, 0), (b, 1, depth))])


_SAMPLERS = (sphere, cube, cylinder, cone, torus, capsule, pyramid, helix, table, chair, l_shape, cross)
CLASSES = tuple(f.__name__ for f in _SAMPLERS)
_Z_UP_TO_Y_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # rows: new axes; maps canonical z to world y


def _rotation(axis, angle):
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _deform(rng, p):
    """Smooth random deformation in the canonical (z-up) frame."""
    p = p * rng.uniform(0.75, 1.25, 3)  # anisotropic scale
    z = p[:, 2:] / max(np.abs(p[:, 2]).max(), 1e-9)
    p[:, :2] *= 1 + rng.uniform(-0.25, 0.25) * z  # taper along the up axis
    p[:, :2] += rng.uniform(-0.15, 0.15, 2) * z**2  # bend
    freq, phase = rng.uniform(1.0, 3.0, 3), rng.uniform(0, 2 * math.pi, 3)
    return p + rng.uniform(0, 0.04) * np.sin(freq * p[:, [1, 2, 0]] + phase)  # wobble


def make_shape(label, rng, num_points):
    """One object of class `label` as (num_points, 3) float32, normalised to the unit sphere."""
    p = _deform(rng, _SAMPLERS[label](rng, num_points))
    yaw, tilt_dir, tilt = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(0, 15))
    rot = _rotation((math.cos(tilt_dir), 0.0, math.sin(tilt_dir)), tilt) @ _rotation((0.0, 1.0, 0.0), yaw)
    p = p @ (rot @ _Z_UP_TO_Y_UP).T
    p += rng.normal(scale=rng.uniform(0.003, 0.012), size=p.shape)  # sampling noise
    p -= p.mean(0)
    return (p / np.linalg.norm(p, axis=1).max()).astype(np.float32)


class SyntheticShapes:
    """`num_objects` procedural shapes of len(CLASSES) classes (object i has class i % len(CLASSES)).

    `ds[i] -> {"points": FloatTensor (num_points, 3), "label": int}`. The "train" and "test" splits are drawn
    from disjoint seeds, so they never share an object.
    """

    kind = "synthetic"
    fps_ordered = False

    def __init__(self, num_objects, num_points=2048, seed=0, split="train"):
        self.num_objects = check_int("num_objects", num_objects, 1)
        self.num_points = check_int("num_points", num_points, 1)
        self.seed = check_int("seed", seed, 0)
        self.split = check_choice("split", split, _SPLITS)
        self.classes = list(CLASSES)
        self.labels = np.arange(self.num_objects, dtype=np.int64) % len(CLASSES)
        self.names = [str(i) for i in range(self.num_objects)]

    def __len__(self):
        return self.num_objects

    def __getitem__(self, index):
        index = check_int("index", index)
        if not -self.num_objects <= index < self.num_objects:
            raise IndexError(f"index {index} out of range for {self.num_objects} objects")
        index %= self.num_objects
        label = int(self.labels[index])
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], index])
        return {"points": torch.from_numpy(make_shape(label, rng, self.num_points)), "label": label}

    def fingerprint(self):
        """Stable id of exactly these objects (generator version and every parameter but the point count, which
        changes the sampling, not the objects)."""
        spec = {
            "generator": "crossjepa.synthetic",
            "version": _VERSION,
            "classes": self.classes,
            "num_objects": self.num_objects,
            "seed": self.seed,
            "split": self.split,
        }
        return "synthetic-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
