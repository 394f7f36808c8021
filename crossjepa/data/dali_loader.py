"""The "dali" backend of make_loader: an NVIDIA DALI pipeline over the packed arrays.

Two external sources feed each iteration: references to the (memory-mapped) points array, which DALI reads in
place (no_copy), and the batch plan from loaders.py (gather indices, labels and the drawn augmentation). DALI
then gathers the num_points points of every object in one ``sequence_rearrange`` over the flattened array (on
the host: it reads the memory map), and casts and augments them with ``coord_transform`` and an add, on the GPU
when the pipeline has one (``device_id``), else on the CPU. The batch's dataset indices come from the plan, on
the host. The random draws are the ones of the other backends (CPU generator seeded by (seed, epoch, batch)), so
the dali backend yields the torch backend's batches, augmented or not (up to float rounding of the transform).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .loaders import Loader, batch_generator, check_num_points, draw_batch, stacked_arrays

_MAX_ROWS = 2**31 - 1  # sequence_rearrange takes int32 indices: the flattened array is cut into shards below this


def _import_dali():
    try:
        import nvidia.dali as dali
        from nvidia.dali import fn, types
        from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type
    except ImportError as e:
        raise ImportError(
            "backend 'dali' needs NVIDIA DALI for torch's CUDA major: pip install 'crossjepa[dali-cuda12]' "
            f"or 'crossjepa[dali-cuda13]' (nvidia-dali-cuda120 / -cuda130) ({e})"
        ) from None
    return dali, fn, types, feed_ndarray, to_torch_type


def _device_id(device):
    """DALI's device_id: None (CPU pipeline) or a CUDA ordinal; default CUDA when torch sees one."""
    if device is None:
        return torch.cuda.current_device() if torch.cuda.is_available() else None
    device = torch.device(device)
    if device.type == "cpu":
        return None
    if device.type != "cuda":
        raise ValueError(f"device: expected 'cpu' or a CUDA device for backend 'dali', got {device}")
    return device.index if device.index is not None else torch.cuda.current_device()


class _Feeder:
    """The external sources' callbacks: batch `info.iteration` of the epoch set by start()."""

    def __init__(self, points, labels, num_points, augment, seed, rows_per_shard):
        self.labels, self.num_points, self.augment, self.seed = labels, num_points, augment, seed
        self.num_stored = points.shape[1]
        self.objects_per_shard = max(1, rows_per_shard // self.num_stored)
        flat = points.reshape(-1, 3)  # a view: the array is C-contiguous (checked by the loader)
        step = self.objects_per_shard * self.num_stored
        self.shards = [flat[i : i + step] for i in range(0, flat.shape[0], step)]
        self.epoch, self.first, self.batches = 0, 0, []

    def start(self, epoch, first, batches):
        """Feed `batches` (the epoch's, from batch `first` on), numbered from `first`."""
        self.epoch, self.first, self.batches = epoch, first, [b.numpy() for b in batches]

    def _batch(self, info):
        if info.iteration >= len(self.batches):
            raise StopIteration
        return self.batches[info.iteration]

    def data(self, info):
        index = self._batch(info)
        return [self.shards[s] for s in index // self.objects_per_shard]

    def plan(self, info):
        index = self._batch(info)
        b = len(index)
        number = self.first + info.iteration  # the batch's number in its epoch
        g = batch_generator(self.seed, self.epoch, number, "cpu") if self.augment is not None else None
        subset, aug = draw_batch(g, b, self.num_stored, self.num_points, self.augment)
        points = np.arange(self.num_points)[None] if subset is None else subset.numpy()
        order = ((index % self.objects_per_shard)[:, None] * self.num_stored + points).astype(np.int32)
        rotation = np.tile(np.eye(3, dtype=np.float32), (b, 1, 1)) if aug is None else aug.rotation.numpy()
        out = [order, self.labels[index], rotation]
        if aug is not None:
            out += [aug.matrix.numpy(), aug.translation.numpy(), aug.noise.numpy()]
        return out


class DaliLoader(Loader):
    def __init__(self, dataset, plan, num_points, augment, seed, device, rows_per_shard=_MAX_ROWS):
        super().__init__(plan, num_points, augment)
        self._dali, self._fn, self._types, self._feed_ndarray, self._torch_type = _import_dali()
        points, labels = stacked_arrays(dataset, "dali")
        check_num_points(num_points, points.shape[1])
        if not points.flags.c_contiguous:
            points = np.ascontiguousarray(points)
        self.device_id = _device_id(device)
        self._feeder = _Feeder(points, labels, num_points, augment, seed, rows_per_shard)
        self._pipe = None
        self._running = False  # an epoch was left unfinished: drain it before the next one

    def _build(self):
        fn, types = self._fn, self._types
        gpu, feeder, augment = self.device_id is not None, self._feeder, self.augment is not None

        @self._dali.pipeline_def(
            batch_size=self.plan.batch_size,
            num_threads=min(4, os.cpu_count() or 1),
            device_id=self.device_id,
            prefetch_queue_depth=2,
        )
        def graph():
            data = fn.external_source(source=feeder.data, batch=True, batch_info=True, no_copy=True, layout="FC")
            plan = fn.external_source(source=feeder.plan, batch=True, batch_info=True, num_outputs=6 if augment else 3)
            order, label, rotation = plan[:3]
            # The gather sees objects' points as frames ("F"); drop the layout so later ops see (P, 3) samples.
            points = fn.reshape(fn.sequence_rearrange(data, new_order=order), layout="")
            if gpu:
                points, label, rotation = points.gpu(), label.gpu(), rotation.gpu()
            points = fn.cast(points, dtype=types.FLOAT)
            if augment:
                matrix, translation, noise = plan[3:]
                points = fn.coord_transform(points, M=matrix, T=translation) + (noise.gpu() if gpu else noise)
            return points, label, rotation

        pipe = graph()
        pipe.build()
        return pipe

    def _to_torch(self, tensor_list):
        tensor = tensor_list.as_tensor()
        device = torch.device("cuda", self.device_id) if self.device_id is not None else torch.device("cpu")
        out = torch.empty(tensor.shape(), dtype=self._torch_type[tensor.dtype], device=device)
        stream = torch.cuda.current_stream(device) if self.device_id is not None else None
        return self._feed_ndarray(tensor, out, cuda_stream=stream)

    def _run_to_end(self):
        while True:
            try:
                self._pipe.run()
            except StopIteration:
                break
        self._pipe.reset()

    def _iterate(self, epoch, first):
        if self._pipe is None:
            self._pipe = self._build()
        if self._running:
            self._run_to_end()
            self._running = False
        batches = self.plan.batches(epoch)[first:]
        if not batches:
            return
        self._feeder.start(epoch, first, batches)
        self._running = True
        for index in batches:  # the dataset indices come from the plan: on the host, as on every backend
            points, label, rotation = (self._to_torch(o) for o in self._pipe.run())
            yield {"points": points, "label": label, "index": index, "rotation": rotation}
        self._run_to_end()  # the feeder's StopIteration ends the epoch
        self._running = False
