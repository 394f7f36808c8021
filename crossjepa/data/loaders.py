"""make_loader: one interface, three backends ("torch", "device", "dali"), the same batches.

What every backend shares is defined once, in this module:
- epoch order: ``torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))`` when shuffling,
  else 0..n-1. Under ``world_size > 1`` the order is padded by wrapping around (or cut, with drop_last) to a
  multiple of world_size and rank r takes every world_size-th object from r, like DistributedSampler.
- batch b of an epoch: the next batch_size objects of that order; the last batch is shorter unless drop_last.
- points of a batch (draw_batch): without augmentation, the first num_points stored points of each cloud (the
  packed format stores clouds in farthest-point order, so a prefix is an FPS subsample). With augmentation, a
  uniformly random num_points-subset of each cloud, then transforms.draw_augmentation, all from a generator
  seeded by (seed, epoch, b) on the backend's device: a batch does not depend on workers or on earlier batches.
  CPU generators give the same draws on every backend; a CUDA generator draws other numbers.
Each batch: {"points" (B,P,3) float32, "label" (B,) int64, "index" (B,) int64 dataset indices, "rotation"
(B,3,3) float32, the augmentation rotation (identity without augmentation; rotate cameras with
transforms.rotate_poses)}, all on the loader's device except "index", which stays a CPU tensor on every backend
(the host uses it to slice arrays; reading it back from a GPU would be a sync, or a crash in `.numpy()`).
Iterating starts the next epoch; ``set_epoch`` picks one (e.g. when resuming), and its ``first_batch`` starts that
epoch at a later batch without reading the ones before it: since a batch depends only on (seed, epoch, batch),
the batches that follow are the same as in an epoch run from its start.

Datasets with ``.points_array`` (O, N, 3) (a memory map for the packed format) and ``.labels_array`` (O,) are
read with one gather per batch; an optional ``.array_rows`` (len(dataset),) says which row of points_array
holds each object (a subset of a packed dataset; see data/contract.py). Other datasets are read item by item
(torch backend) or stacked once into memory (device and dali backends, which need every cloud to have the same
number of points).
Coordinates are checked finite where they enter: each batch as it is built (torch), the stacked arrays once
(device, dali); the model's ops then skip that scan.

``targets`` (optional; targets.CachedTargets, or any picklable object with its ``read((seed, rank, epoch,
batch), index)``, index: numpy int64) adds the teacher targets to each batch: they are read where the batch is
built (DataLoader workers; for device and dali, a host thread one batch ahead) and moved with it, so nothing
reads the batch's index back from the device.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..validate import check_int
from . import contract
from .subsample import draw_subset, keyed_generator
from .transforms import Augmentation, AugmentConfig, apply_augmentation, draw_augmentation

BACKENDS = ("torch", "device", "dali")


def epoch_order(num_objects: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """The order (int64, CPU) in which an epoch visits the dataset."""
    if not shuffle:
        return torch.arange(num_objects)
    return torch.randperm(num_objects, generator=torch.Generator().manual_seed(seed + epoch))


def batch_generator(seed: int, epoch: int, batch: int, device) -> torch.Generator:
    """The generator of batch `batch` of `epoch`: a well-mixed seed from the three numbers."""
    return keyed_generator((seed, epoch, batch), device)


def draw_batch(
    generator: Optional[torch.Generator],
    batch_size: int,
    num_stored: int,
    num_points: int,
    config: Optional[AugmentConfig],
) -> Tuple[Optional[torch.Tensor], Optional[Augmentation]]:
    """(subset (B, P) or None for the prefix, augmentation or None): the random part of a batch."""
    if config is None:
        return None, None
    subset = draw_subset(generator, batch_size, num_stored, num_points)
    return subset, draw_augmentation(batch_size, num_points, generator, config)


def finish_batch(points: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, aug: Optional[Augmentation]) -> dict:
    """Cast, augment and package a gathered batch (B, P, 3)."""
    points = points.float()
    if aug is None:
        rotation = torch.eye(3, device=points.device).repeat(points.shape[0], 1, 1)
    else:
        points, rotation = apply_augmentation(points, aug), aug.rotation
    return {"points": points, "label": labels, "index": index, "rotation": rotation}


class BatchPlan:
    """The batches of each epoch (see the module docstring)."""

    def __init__(
        self,
        num_objects: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.num_objects, self.batch_size, self.shuffle = num_objects, batch_size, shuffle
        self.seed, self.drop_last, self.rank, self.world_size = seed, drop_last, rank, world_size
        per_rank = num_objects // world_size if drop_last else -(-num_objects // world_size)
        self.per_rank = per_rank
        self.num_batches = per_rank // batch_size if drop_last else -(-per_rank // batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        order = epoch_order(self.num_objects, self.shuffle, self.seed, epoch)
        if self.world_size == 1:
            return order
        total = self.per_rank * self.world_size
        order = order.repeat(-(-total // self.num_objects))[:total]
        return order[self.rank :: self.world_size]

    def batches(self, epoch: int) -> Sequence[torch.Tensor]:
        order = self.order(epoch)
        b = self.batch_size
        return [order[i * b : (i + 1) * b] for i in range(self.num_batches)]

    def __len__(self) -> int:
        return self.num_batches


class Loader:
    """Base of the backends: len() batches per epoch; each iteration is the next epoch."""

    targets = None  # see the module docstring
    reads_targets = False  # whether the backend adds `targets` itself (else _with_targets does)

    def __init__(self, plan: BatchPlan, num_points: int, augment: Optional[AugmentConfig]):
        self.plan, self.num_points, self.augment = plan, num_points, augment
        self.epoch, self.first_batch = 0, 0

    def __len__(self) -> int:
        return len(self.plan)

    def set_epoch(self, epoch: int, first_batch: int = 0) -> None:
        """The next iteration yields batches first_batch, first_batch + 1, ... of `epoch`."""
        self.epoch = check_int("epoch", epoch, 0)
        self.first_batch = check_int("first_batch", first_batch, 0, len(self))

    def __iter__(self):
        epoch, first = self.epoch, self.first_batch
        self.epoch, self.first_batch = epoch + 1, 0
        batches = self._iterate(epoch, first)
        if self.targets is None or self.reads_targets:
            return batches
        return self._with_targets(batches, epoch, first)

    def _iterate(self, epoch: int, first: int):
        raise NotImplementedError

    def _with_targets(self, batches, epoch: int, first: int):
        """Adds `targets` to batches built on a device: read on the host from the plan's indices one batch
        ahead in a thread (overlapping the step), pinned, and copied to the batch's device without blocking."""
        plan = self.plan.batches(epoch)
        pin = torch.cuda.is_available()

        def build(b):
            extra = self.targets.read((self.plan.seed, self.plan.rank, epoch, b), plan[b].numpy())
            return {k: v.pin_memory() for k, v in extra.items()} if pin else extra

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(build, first) if first < len(plan) else None
            for b, batch in enumerate(batches, first):
                extra = pending.result()
                pending = pool.submit(build, b + 1) if b + 1 < len(plan) else None
                device = batch["points"].device
                batch.update({k: v.to(device, non_blocking=True) for k, v in extra.items()})
                yield batch


# ---------------------------------------------------------------------------------------------- sources


def packed_arrays(dataset):
    """(points (O, N, 3), labels (O,) int64) for datasets that expose them, else (None, None)."""
    points = contract.points_array(dataset)
    if points is None:
        return None, None
    rows = contract.array_rows(dataset)
    if points.ndim != 3 or points.shape[2] != 3 or (rows is None and points.shape[0] != len(dataset)):
        objects = len(dataset) if rows is None else "O"
        raise ValueError(f"dataset.points_array: expected shape ({objects}, N, 3), got {points.shape}")
    if rows is not None and (
        rows.shape != (len(dataset),) or rows.min(initial=0) < 0 or rows.max(initial=0) >= len(points)
    ):
        raise ValueError(f"dataset.array_rows: expected {len(dataset)} rows of points_array (0..{len(points) - 1})")
    labels = contract.labels_array(dataset)
    if labels is None:
        labels = contract.labels(dataset)
    if labels.shape[0] != len(dataset):
        raise ValueError(f"dataset.labels_array: expected {len(dataset)} labels, got {labels.shape[0]}")
    return points, labels


def check_finite(points: np.ndarray, index) -> None:
    """Refuse NaN/Inf coordinates where a cloud enters, naming the objects (`index`: their numbers)."""
    if not np.isfinite(points).all():
        bad = np.asarray(index)[~np.isfinite(points).all(axis=(1, 2))]
        raise ValueError(f"dataset: non-finite coordinates in object(s) {bad[:8].tolist()}")


def stacked_arrays(dataset, backend: str):
    """(points, labels) of any dataset: its packed arrays, or every item read once and stacked; checked
    finite."""
    points, labels = packed_arrays(dataset)
    if points is not None:
        rows = contract.array_rows(dataset)
        if rows is not None:
            points = points[rows]
        check_finite(points, np.arange(len(points)))
        return points, labels
    items = [dataset[i] for i in range(len(dataset))]
    clouds = [np.asarray(item["points"], dtype=np.float32) for item in items]
    sizes = {c.shape for c in clouds}
    if len(sizes) != 1 or clouds[0].ndim != 2 or clouds[0].shape[1] != 3:
        raise ValueError(
            f"dataset: backend {backend!r} needs clouds of one shape (N, 3), got shapes "
            f"{sorted(sizes)[:3]}; use backend 'torch' or pack the dataset"
        )
    points = np.stack(clouds)
    check_finite(points, np.arange(len(points)))
    return points, np.array([int(item["label"]) for item in items], dtype=np.int64)


def check_num_points(num_points: int, num_stored: int) -> None:
    check_int("num_points", num_points, 1, num_stored, why="points stored per object")


def gather_numpy(
    points: np.ndarray, index: np.ndarray, num_points: int, subset: Optional[torch.Tensor]
) -> torch.Tensor:
    """points[index] subsampled -> (B, P, 3): one gather from the (memory-mapped) array, objects read in
    ascending order for locality, then put back in batch order."""
    order = np.argsort(index, kind="stable")
    rows = index[order]
    out = np.empty((len(index), num_points, 3), dtype=points.dtype)
    if subset is None:
        out[order] = points[rows, :num_points]
    else:
        flat = rows[:, None] * points.shape[1] + subset.numpy()[order]
        out[order] = np.take(points.reshape(-1, 3), flat, axis=0)  # np.take: ~3x faster than fancy indexing
    return torch.from_numpy(out)


def gather_tensor(
    points: torch.Tensor, index: torch.Tensor, num_points: int, subset: Optional[torch.Tensor]
) -> torch.Tensor:
    """Same as gather_numpy for a resident tensor (any device); index_select is far cheaper than advanced
    indexing on CPU."""
    if subset is None:
        return points[:, :num_points].index_select(0, index)
    flat = (index[:, None] * points.shape[1] + subset).view(-1)
    return points.view(-1, 3).index_select(0, flat).view(len(index), num_points, 3)


# -------------------------------------------------------------------------------------------- backends


class _BatchReader(torch.utils.data.Dataset):
    """Builds whole batches in DataLoader workers from (epoch, batch, indices) requests: checked finite, with
    `targets` added."""

    def __init__(self, dataset, points, labels, num_points, augment, seed, rows=None, targets=None, rank=0):
        self.dataset = dataset if points is None else None
        self.points = None if points is None else _ArrayHandle(points)
        self.labels, self.num_points, self.augment, self.seed = labels, num_points, augment, seed
        self.rows, self.targets, self.rank = rows, targets, rank

    def __getitem__(self, request) -> dict:
        epoch, batch, rows = request  # rows: numpy, cheaper than a tensor to send to a worker
        out = self._build(epoch, batch, rows)
        check_finite(out["points"].numpy(), rows)
        if self.targets is not None:
            out.update(self.targets.read((self.seed, self.rank, epoch, batch), rows))
        return out

    def _build(self, epoch, batch, rows) -> dict:
        index = torch.from_numpy(rows)
        g = batch_generator(self.seed, epoch, batch, "cpu") if self.augment is not None else None
        if self.points is not None:
            points = self.points.array
            stored = rows if self.rows is None else self.rows[rows]
            subset, aug = draw_batch(g, len(rows), points.shape[1], self.num_points, self.augment)
            gathered = gather_numpy(points, stored, self.num_points, subset)
            return finish_batch(gathered, torch.from_numpy(self.labels[rows]), index, aug)
        items = [self.dataset[int(i)] for i in rows]
        clouds = [torch.as_tensor(item["points"], dtype=torch.float32) for item in items]
        labels = torch.tensor([int(item["label"]) for item in items], dtype=torch.int64)
        for i, cloud in zip(rows.tolist(), clouds):
            if cloud.dim() != 2 or cloud.shape[1] != 3 or cloud.shape[0] < self.num_points:
                raise ValueError(
                    f"dataset[{i}]: expected points (N >= num_points={self.num_points}, 3), "
                    f"got shape {tuple(cloud.shape)}"
                )
        sizes = {c.shape[0] for c in clouds}
        if len(sizes) == 1:  # the same draws as the array path of every backend
            subset, aug = draw_batch(g, len(index), sizes.pop(), self.num_points, self.augment)
            return finish_batch(
                gather_tensor(torch.stack(clouds), torch.arange(len(index)), self.num_points, subset),
                labels,
                index,
                aug,
            )
        if g is None:
            points = torch.stack([c[: self.num_points] for c in clouds])
            return finish_batch(points, labels, index, None)
        points = torch.stack([c[draw_subset(g, 1, c.shape[0], self.num_points)[0]] for c in clouds])
        return finish_batch(points, labels, index, draw_augmentation(len(index), self.num_points, g, self.augment))


class _ArrayHandle:
    """Holds the points array; a memory map of a whole file crosses to spawned workers as its path, not as a
    pickled copy of the data."""

    def __init__(self, array):
        self.array = array

    def __getstate__(self):
        a = self.array
        if (
            isinstance(a, np.memmap)
            and isinstance(a.filename, (str, os.PathLike))
            and a.flags.c_contiguous
            and os.path.getsize(a.filename) == a.offset + a.nbytes
        ):
            return {"memmap": (os.fspath(a.filename), a.dtype.str, a.offset, a.shape)}
        return {"array": a}

    def __setstate__(self, state):
        if "memmap" in state:
            filename, dtype, offset, shape = state["memmap"]
            self.array = np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
        else:
            self.array = state["array"]


class _EpochSampler(torch.utils.data.Sampler):
    """Yields (epoch, batch, indices) requests for the epoch the loader is on, from batch `first` on."""

    def __init__(self, plan: BatchPlan):
        self.plan, self.epoch, self.first = plan, 0, 0

    def __iter__(self):
        epoch, batches = self.epoch, self.plan.batches(self.epoch)
        return iter([(epoch, b, batches[b].numpy()) for b in range(self.first, len(batches))])

    def __len__(self) -> int:
        return len(self.plan) - self.first


class TorchLoader(Loader):
    """torch DataLoader over whole-batch requests: one gather per batch in the workers, pinned memory on CUDA
    machines; batches are moved to `device` when one is given."""

    reads_targets = True

    def __init__(self, dataset, plan, num_points, augment, seed, device, num_workers, targets=None):
        super().__init__(plan, num_points, augment)
        self.targets = targets
        points, labels = packed_arrays(dataset)
        if points is not None:
            check_num_points(num_points, points.shape[1])
        self.device = None if device is None else torch.device(device)
        self._sampler = _EpochSampler(plan)
        pin = torch.cuda.is_available() and (self.device is None or self.device.type == "cuda")
        self._loader = torch.utils.data.DataLoader(
            _BatchReader(
                dataset, points, labels, num_points, augment, seed, contract.array_rows(dataset), targets, plan.rank
            ),
            sampler=self._sampler,
            batch_size=None,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=pin,
        )

    def _iterate(self, epoch, first):
        self._sampler.epoch, self._sampler.first = epoch, first
        for batch in self._loader:
            if self.device is not None:
                batch = {k: v if k == "index" else v.to(self.device, non_blocking=True) for k, v in batch.items()}
            yield batch


class DeviceLoader(Loader):
    """The whole dataset resident on `device` (CUDA when available): each step indexes, subsamples and
    augments there; the host only slices the epoch's order, which is moved once per epoch."""

    def __init__(self, dataset, plan, num_points, augment, seed, device):
        super().__init__(plan, num_points, augment)
        points, labels = stacked_arrays(dataset, "device")
        check_num_points(num_points, points.shape[1])
        self.device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
        self.points = torch.from_numpy(np.array(points)).to(self.device)  # a copy: never the file mapping
        self.labels = torch.from_numpy(labels).to(self.device)
        self.seed = seed

    def _iterate(self, epoch, first):
        host_order = self.plan.order(epoch)
        order = host_order.to(self.device)
        b = self.plan.batch_size
        for i in range(first, len(self.plan)):
            index = order[i * b : (i + 1) * b]
            g = batch_generator(self.seed, epoch, i, self.device) if self.augment is not None else None
            subset, aug = draw_batch(g, len(index), self.points.shape[1], self.num_points, self.augment)
            points = gather_tensor(self.points, index, self.num_points, subset)
            yield finish_batch(points, self.labels[index], host_order[i * b : (i + 1) * b], aug)
