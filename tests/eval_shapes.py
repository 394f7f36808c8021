"""Small in-memory labelled shape sets for the fine-tuning / few-shot / embedding tests."""

from __future__ import annotations

import numpy as np
import torch

from crossjepa.data.synthetic import CLASSES, make_shape

EASY = (0, 1, 7)  # sphere, cube, helix: separable by a tiny encoder in a few hundred steps


class Shapes:
    """`n` procedural clouds of `num_points` points cycling through `classes` (labels 0..len-1), seeded.
    Every item read is counted in `reads` (object index -> count), so tests can see which data a step used."""

    def __init__(self, n: int, seed: int, classes=EASY, num_points: int = 128) -> None:
        self.points = [
            torch.from_numpy(make_shape(classes[i % len(classes)], np.random.default_rng([seed, i]), num_points))
            for i in range(n)
        ]
        self.labels = np.arange(n) % len(classes)
        self.classes = [CLASSES[c] for c in classes]
        self.names = [f"shape-{seed}-{i}" for i in range(n)]
        self.reads: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i) -> dict:
        i = int(i)
        self.reads[i] = self.reads.get(i, 0) + 1
        return {"points": self.points[i], "label": int(self.labels[i])}
