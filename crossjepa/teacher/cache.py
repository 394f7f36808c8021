"""The teacher-embedding cache: build (resumable), verify, open (memory-mapped).

Layout of a finished cache directory (format version 1):
  embeddings.npy  float16 [objects, views, dim]      teacher embedding of every (object, view)
  poses.npy       float32 [objects, views, 4, 4]     camera-to-world pose of every view
  histograms.npy  float32 [objects, views, 3*bins]   per-view colour histogram (foreground pixels)
  stats.npy       float32 [2, dim]                   per-dimension target mean (row 0) and std (row 1)
  meta.json       teacher, views, dataset, shapes, sha256 of every chunk of `chunk_size` objects per file
All .npy files are standard (numpy.load(..., mmap_mode="r") reads them zero-copy).

A build works in `<out>.partial/` beside the output: the .npy files are preallocated there, chunks of
objects are computed with a fixed batch composition, written at their rows' byte offsets and synced, and
then the chunk's index is added to the progress file of the process that computed it (`progress.json`, or
`progress-<rank>.json` under torchrun; rewritten atomically). Stats and checksums are computed from the
files at the end, meta.json is written, and the directory is renamed to `<out>`. A build killed at any
moment and resumed (by any number of processes) recomputes only unrecorded chunks, so it ends with the same
bytes as an uninterrupted one. While it runs, a build holds `<out>.lock` (its pid, host and start time; rank
0's under torchrun): a second build into the same directory is refused at once; the lock of a killed build
is taken over by a `resume` on the same host. Under torchrun the ranks share the chunks
(crossjepa.teacher.shards).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from crossjepa import render

from ..atomic import atomic_target, replace_dir, write_bytes
from ..hashing import file_sha256
from ..validate import check_int, is_int
from .build_lock import acquire_lock, release_lock
from .shards import Shards
from .views import RenderedViews, describe_view_source, read_view_batch

__all__ = ["CacheCorruptError", "TeacherCache", "build_cache", "open_cache", "verify_cache", "FORMAT_VERSION"]

_log = logging.getLogger(__name__)
FORMAT = "crossjepa-teacher-cache"
FORMAT_VERSION = 1
META, STATS, BUILD, PROGRESS = "meta.json", "stats.npy", "build.json", "progress.json"
ARRAYS = ("embeddings.npy", "poses.npy", "histograms.npy")  # chunked along objects, checksummed per chunk
STD_FLOOR = 1e-6
# Images per teacher batch when the caller names none. On a CPU a batch of 16 keeps a layer's activations in the
# last-level cache: 1.6x the images/s of 64 with Lite0 at 224 px on 2 cores (docs/benchmarks.md).
DEFAULT_BATCH_SIZE = {"cpu": 16, "cuda": 64}
_IDENTITY_KEYS = ("format_version", "teacher", "views", "dataset", "histogram_bins")


class CacheCorruptError(ValueError):
    """A cache file does not match its recorded checksum; ``chunk`` is None for whole-file checks."""

    def __init__(self, message: str, file: str, chunk: int | None = None):
        super().__init__(message)
        self.file, self.chunk = file, chunk


def _jsonable(value):
    return json.loads(json.dumps(value))


def _write_json(path: Path, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), fsync=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


def _chunks(num_objects: int, chunk_size: int):
    return [(k, s, min(s + chunk_size, num_objects)) for k, s in enumerate(range(0, num_objects, chunk_size))]


def _diff(old: dict, new: dict) -> str:
    keys = [k for k in _IDENTITY_KEYS if old.get(k) != new.get(k)]
    parts = []
    for key in keys:
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            sub = sorted(k for k in set(old[key]) | set(new[key]) if old[key].get(k) != new[key].get(k))
            parts.append(f"{key} ({', '.join(sub)})")
        else:
            parts.append(key)
    return ", ".join(parts) or "settings"


def _identity(dataset, teacher, source, num_views: int, bins: int) -> dict:
    fingerprint = getattr(dataset, "fingerprint", None)
    if not callable(fingerprint):
        raise TypeError("dataset: expected a dataset with a fingerprint() method")
    return _jsonable(
        {
            "format_version": FORMAT_VERSION,
            "teacher": {
                "name": teacher.name,
                "weights_id": teacher.weights_id,
                "params_sha256": teacher.params_sha256,
                "pooling": teacher.pooling,
                "image_size": teacher.image_size,
                "dim": teacher.embed_dim,
                # Folded BatchNorm rounds differently: caches of the two paths differ in their last bits.
                "optimized": bool(getattr(teacher, "optimized", False)),
            },
            "views": {**describe_view_source(source), "num_views": num_views},
            "dataset": {"fingerprint": str(fingerprint()), "num_objects": len(dataset)},
            "histogram_bins": bins,
        }
    )


def _shapes(identity: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    o, v = identity["dataset"]["num_objects"], identity["views"]["num_views"]
    d, b = identity["teacher"]["dim"], identity["histogram_bins"]
    return {
        "embeddings.npy": ("float16", (o, v, d)),
        "poses.npy": ("float32", (o, v, 4, 4)),
        "histograms.npy": ("float32", (o, v, 3 * b)),
        STATS: ("float32", (2, d)),
    }


def _open_arrays(directory: Path, identity: dict, mode: str) -> dict[str, np.memmap]:
    shapes = _shapes(identity)
    return {
        name: np.lib.format.open_memmap(
            directory / name, mode=mode, dtype=shapes[name][0], shape=shapes[name][1] if mode == "w+" else None
        )
        for name in ARRAYS
    }


def _start_build(partial: Path, identity: dict, chunk_size: int, batch_size: int, device: str) -> dict:
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    for array in _open_arrays(partial, identity, "w+").values():
        array.flush()
    state = {"identity": identity, "chunk_size": chunk_size, "batch_size": batch_size, "device": device}
    _write_json(partial / PROGRESS, {"done": []})
    _write_json(partial / BUILD, state)  # last: a partial dir without build.json is started again
    return state


class _RowWriter:
    """Writes rows of the preallocated .npy files at their byte offsets (os.pwrite), never through a shared
    memory map: ranks on several nodes write disjoint rows of the same files on a shared file system, and a
    page written back from one node's map would overwrite its neighbours' rows."""

    def __init__(self, directory: Path):
        self.files = {}
        for name in ARRAYS:
            header = np.load(directory / name, mmap_mode="r")  # the header's length, dtype and shape
            row_bytes = header.dtype.itemsize * int(np.prod(header.shape[1:]))
            self.files[name] = (os.open(directory / name, os.O_WRONLY), header.offset, row_bytes, header.dtype)

    def write(self, name: str, first_row: int, rows: np.ndarray) -> None:
        fd, offset, row_bytes, dtype = self.files[name]
        data = np.ascontiguousarray(rows, dtype=dtype).tobytes()
        position, view = offset + first_row * row_bytes, memoryview(data)
        while view:
            written = os.pwrite(fd, view, position)
            view, position = view[written:], position + written

    def sync(self) -> None:
        for fd, *_ in self.files.values():
            os.fsync(fd)

    def close(self) -> None:
        for fd, *_ in self.files.values():
            os.close(fd)


def _compute_chunk(
    writer: _RowWriter, source, teacher, start: int, stop: int, per_batch: int, num_views: int, bins: int, bar
) -> None:
    for s in range(start, stop, per_batch):
        indices = list(range(s, min(s + per_batch, stop)))
        images, poses, masks = read_view_batch(source, indices, num_views)
        hist = render.color_histogram(images, masks.to(images.device), bins=bins)
        emb = teacher(images.reshape(-1, *images.shape[2:])).to("cpu", torch.float16)
        if not torch.isfinite(emb).all():
            raise FloatingPointError(
                f"teacher: non-finite (or beyond float16 range) embeddings for objects {indices[0]}..{indices[-1]}"
            )
        writer.write("embeddings.npy", s, emb.reshape(len(indices), num_views, -1).numpy())
        writer.write("poses.npy", s, poses.numpy())
        writer.write("histograms.npy", s, hist.to("cpu", torch.float32).numpy())
        bar.update(len(indices) * num_views)


def _finish(partial: Path, state: dict, teacher) -> None:
    identity, chunk_size = state["identity"], state["chunk_size"]
    arrays = {name: np.load(partial / name, mmap_mode="r") for name in ARRAYS}
    emb = arrays["embeddings.npy"]
    total, total_sq = np.zeros(emb.shape[-1]), np.zeros(emb.shape[-1])
    chunks = _chunks(emb.shape[0], chunk_size)
    sums = {name: [] for name in ARRAYS}
    for _, s, e in chunks:
        block = emb[s:e].astype(np.float64).reshape(-1, emb.shape[-1])
        total += block.sum(0)
        total_sq += (block * block).sum(0)
        for name in ARRAYS:
            sums[name].append(_sha256(arrays[name][s:e]))
    count = emb.shape[0] * emb.shape[1]
    mean = total / count
    std = np.maximum(np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0)), STD_FLOOR)
    with atomic_target(partial / STATS) as tmp:
        np.save(tmp, np.stack([mean, std]).astype(np.float32))
    meta = {
        "format": FORMAT,
        **identity,
        "num_objects": emb.shape[0],
        "num_views": emb.shape[1],
        "dim": emb.shape[2],
        "files": {name: {"dtype": dtype, "shape": list(shape)} for name, (dtype, shape) in _shapes(identity).items()},
        "chunk_size": chunk_size,
        "chunks": sums,
        "stats": {
            "file": STATS,
            "rows": ["mean", "std"],
            "std_floor": STD_FLOOR,
            "sha256": file_sha256(partial / STATS),
        },
        "teacher_input": {"mean": teacher.mean.flatten().tolist(), "std": teacher.std.flatten().tolist()},
        "teacher_weights_source": teacher.weights_source,  # file:PATH, package:NAME, timm-hub or random-init
        "build": {"batch_size": state["batch_size"], "device": state["device"]},
    }
    _write_json(partial / META, meta)


def _publish(partial: Path, out: Path) -> None:
    # Drop bookkeeping and temp files a kill may have left; build.json last, so that a finished partial
    # stays recognisable until the rename.
    keep = set(ARRAYS) | {STATS, META, BUILD}
    for entry in partial.iterdir():
        if entry.name not in keep:
            entry.unlink()
    (partial / BUILD).unlink(missing_ok=True)
    replace_dir(partial, out)


def _same(meta, identity: dict) -> bool:
    return isinstance(meta, dict) and {k: meta.get(k) for k in _IDENTITY_KEYS} == identity


def _check_out_dir(out: Path, identity: dict, overwrite: bool) -> bool:
    """True if ``out`` already holds this cache; raise if it holds something that must not be replaced."""
    if not (out / META).is_file():
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"out_dir: {out} exists and is not a teacher cache; choose another directory")
        return False
    meta = _read_json(out / META)
    if _same(meta, identity):
        return True
    if not overwrite:
        what = f"a different {_diff(meta, identity)}" if isinstance(meta, dict) else f"an unreadable {META}"
        raise ValueError(f"out_dir: {out} holds a finished cache with {what}; pass overwrite=True to replace it")
    return False


def _resume_state(partial: Path, identity: dict, resume: bool, overwrite: bool) -> dict | None:
    """The recorded state of an unfinished build of the same settings, if it is to be continued."""
    if not partial.is_dir():
        return None
    state = _read_json(partial / BUILD)
    finished = _read_json(partial / META)
    if state is None and _same(finished, identity):  # killed while publishing: build.json already gone
        state = {"identity": identity, "chunk_size": finished["chunk_size"], **finished["build"]}
    if not isinstance(state, dict) or not {"identity", "chunk_size", "batch_size", "device"} <= set(state):
        return None
    if state["identity"] != identity:
        if resume and not overwrite:
            raise ValueError(
                f"resume: {partial} is an unfinished build with a different "
                f"{_diff(state['identity'], identity)}; pass overwrite=True to discard it"
            )
        return None
    if not resume:
        _log.info("teacher cache: discarding the unfinished build in %s (resume=False)", partial)
        return None
    return state


def _progress_file(partial: Path, rank: int) -> Path:
    return partial / (PROGRESS if rank == 0 else f"progress-{rank}.json")


def _done_chunks(partial: Path, pattern: str = "progress*.json") -> set[int]:
    """Chunks recorded as finished by any rank of any run (each rank records its own in its own file)."""
    done = set()
    for path in partial.glob(pattern):
        done.update((_read_json(path) or {}).get("done", []))
    return done


def _run_chunks(
    partial: Path,
    state: dict,
    source,
    teacher,
    num_objects: int,
    num_views: int,
    bins: int,
    progress: bool,
    on_chunk,
    shards: Shards,
) -> None:
    done = _done_chunks(partial)
    chunks = _chunks(num_objects, state["chunk_size"])
    todo = [(k, s, e) for k, s, e in chunks if shards.owns(k) and k not in done]
    mine_file = _progress_file(partial, shards.rank)
    recorded = set(_done_chunks(partial, mine_file.name))  # this rank's file keeps what earlier runs put in it
    per_batch = max(1, state["batch_size"] // num_views)
    _log.info(
        "teacher cache: %d objects x %d views, %d/%d chunks done%s",
        num_objects,
        num_views,
        len(done),
        len(chunks),
        f"; rank {shards.rank} of {shards.world_size} computes {len(todo)}" if shards.world_size > 1 else "",
    )
    writer = _RowWriter(partial)
    try:
        with tqdm(
            total=sum(e - s for _, s, e in todo) * num_views,
            unit="img",
            desc="teacher cache" + (f" (rank 0 of {shards.world_size})" if shards.world_size > 1 else ""),
            disable=not (progress and shards.is_main),
            dynamic_ncols=True,
        ) as bar:
            for k, s, e in todo:
                _compute_chunk(writer, source, teacher, s, e, per_batch, num_views, bins, bar)
                writer.sync()
                recorded.add(k)
                _write_json(mine_file, {"done": sorted(recorded)})
                if on_chunk is not None:
                    on_chunk(k, len(chunks))
    finally:
        writer.close()


def build_cache(
    dataset,
    out_dir,
    teacher,
    *,
    num_views: int = 8,
    view_source=None,
    batch_size: int | None = None,
    chunk_size: int = 64,
    bins: int = 8,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_chunk=None,
) -> Path:
    """Embed every (object, view) of ``dataset`` with ``teacher`` into a cache at ``out_dir``; returns its path.

        ``view_source`` (default: ``RenderedViews`` of the dataset at the teacher's resolution) gives images and
        poses per batch of object indices (see crossjepa.teacher.views); its own ``num_views`` attribute, if it
        has one, overrides ``num_views``. ``batch_size`` counts images (whole objects per batch; default
    ``DEFAULT_BATCH_SIZE`` of the teacher's device type). With
        ``resume`` an unfinished build of the same settings continues (its recorded chunk and batch sizes are
        kept so the bytes match); without it, it starts over. A finished cache with the same settings is left as
        it is ("already complete"); one with other settings is replaced only with ``overwrite``.
        ``on_chunk(index, count)`` is called after each chunk is recorded. A second build into ``out_dir`` while
        this one runs raises ValueError (see the module docstring on `<out>.lock`).

        Called by every process of an initialised torch.distributed process group (torchrun), the processes
        build the one cache together (crossjepa.teacher.shards), each on its own teacher and device: the same
        bytes as one process, and a resume continues whatever rank was killed.
    """
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE.get(teacher.device.type, DEFAULT_BATCH_SIZE["cuda"])
    for arg, value in (
        ("num_views", num_views),
        ("batch_size", batch_size),
        ("chunk_size", chunk_size),
        ("bins", bins),
    ):
        check_int(arg, value, 1)
    if len(dataset) == 0:
        raise ValueError("dataset: expected at least one object, got an empty dataset")
    out = Path(out_dir)
    shards = Shards.current()
    lock = shards.decided_by_main(lambda: acquire_lock(out, resume))
    try:
        return _build_locked(
            dataset,
            out,
            teacher,
            num_views,
            view_source,
            batch_size,
            chunk_size,
            bins,
            resume,
            overwrite,
            progress,
            on_chunk,
            shards,
        )
    finally:
        if shards.is_main:
            release_lock(lock)


def _prepare(out: Path, partial: Path, identity: dict, chunk_size, batch_size, resume, overwrite, device):
    """Rank 0's decision: None when ``out`` already holds this cache, else (state, whether chunks remain)."""
    if _check_out_dir(out, identity, overwrite):
        _log.info("teacher cache %s: already complete", out)
        return None
    state = _resume_state(partial, identity, resume, overwrite)
    if state is None:
        state = _start_build(partial, identity, chunk_size, batch_size, device)
    elif state["device"] != device:
        _log.warning(
            "teacher cache: resuming on %s a build started on %s; the embeddings of the remaining "
            "chunks will differ slightly from an uninterrupted build",
            device,
            state["device"],
        )
    if (state["chunk_size"], state["batch_size"]) != (chunk_size, batch_size):
        _log.info(
            "teacher cache: resuming with the build's chunk_size=%d, batch_size=%d",
            state["chunk_size"],
            state["batch_size"],
        )
    return state, not (partial / META).is_file()


def _build_locked(
    dataset,
    out: Path,
    teacher,
    num_views,
    view_source,
    batch_size,
    chunk_size,
    bins,
    resume,
    overwrite,
    progress,
    on_chunk,
    shards: Shards,
) -> Path:
    partial = out.with_name(out.name + ".partial")
    if view_source is None:
        view_source = RenderedViews(dataset, num_views, teacher.image_size, device=teacher.device)
    num_views = getattr(view_source, "num_views", num_views)
    identity = _identity(dataset, teacher, view_source, num_views, bins)
    decision = shards.decided_by_main(
        lambda: _prepare(out, partial, identity, chunk_size, batch_size, resume, overwrite, teacher.device.type)
    )
    if decision is None:
        return out
    state, compute = decision
    if compute:
        _run_chunks(partial, state, view_source, teacher, len(dataset), num_views, bins, progress, on_chunk, shards)
        shards.barrier()  # every rank's chunks are on disk and recorded

        def finish():
            missing = len(_chunks(len(dataset), state["chunk_size"])) - len(_done_chunks(partial))
            if missing:
                raise RuntimeError(f"teacher cache: {missing} chunks are not recorded as done in {partial}")
            _finish(partial, state, teacher)

        shards.decided_by_main(finish)
    shards.decided_by_main(lambda: _publish(partial, out))
    _log.info("teacher cache %s: complete", out)
    return out


class TeacherCache:
    """A finished cache, memory-mapped read-only. Pickles by path (workers re-open the files)."""

    def __init__(self, path: Path, meta: dict, arrays: dict[str, np.ndarray], stats: np.ndarray):
        self.path, self.meta = path, meta
        self.embeddings = arrays["embeddings.npy"]
        self.poses = arrays["poses.npy"]
        self.histograms = arrays["histograms.npy"]
        self.target_mean = np.array(stats[0], dtype=np.float32)
        self.target_std = np.array(stats[1], dtype=np.float32)

    @property
    def num_objects(self) -> int:
        return self.embeddings.shape[0]

    @property
    def num_views(self) -> int:
        return self.embeddings.shape[1]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[2]

    def __len__(self) -> int:
        return self.num_objects

    def __reduce__(self):
        return open_cache, (str(self.path),)

    def __repr__(self) -> str:
        return (
            f"TeacherCache({str(self.path)!r}, objects={self.num_objects}, views={self.num_views}, "
            f"dim={self.dim}, teacher={self.meta['teacher']['name']!r})"
        )

    def check_dataset(self, dataset) -> None:
        """Raise ValueError unless ``dataset`` is the one this cache was built from."""
        fingerprint = str(dataset.fingerprint())
        if fingerprint != self.meta["dataset"]["fingerprint"] or len(dataset) != self.num_objects:
            raise ValueError(
                f"cache: {self.path} was built for dataset {self.meta['dataset']['fingerprint']} "
                f"({self.num_objects} objects), not {fingerprint} ({len(dataset)} objects)"
            )


def open_cache(cache_dir) -> TeacherCache:
    """Open a finished cache (checks format and shapes; reads no payload)."""
    path = Path(cache_dir)
    if not (path / META).is_file() and path.with_name(path.name + ".partial").is_dir():
        raise ValueError(f"cache: {path} is not finished; build it again with resume to complete it")
    if not path.is_dir():
        raise FileNotFoundError(f"cache: no such directory {path}")
    if not (path / META).is_file():
        raise ValueError(f"cache: {path} is not a teacher cache (no {META})")
    meta = _read_json(path / META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"cache: {path / META} is not a crossjepa teacher-cache meta file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"cache: {path} has format version {meta.get('format_version')!r}, "
            f"this crossjepa reads version {FORMAT_VERSION}"
        )
    if not meta.get("num_objects") or not meta.get("num_views"):
        raise ValueError(f"cache: {path} is empty ({meta.get('num_objects')} objects, {meta.get('num_views')} views)")
    try:
        shapes = _shapes(meta)
        chunk_size, chunks, stats_sha = meta["chunk_size"], meta["chunks"], meta["stats"]["sha256"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"cache: {path / META} is incomplete (missing {exc})") from exc
    if not is_int(chunk_size) or chunk_size < 1 or not isinstance(chunks, dict) or not stats_sha:
        raise ValueError(f"cache: {path / META} has no valid chunk checksums")
    arrays = {}
    for name, (dtype, shape) in shapes.items():
        try:
            arrays[name] = np.load(path / name, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ValueError(f"cache: cannot read {path / name} ({exc})") from exc
        got = (str(arrays[name].dtype), tuple(arrays[name].shape))
        if got != (dtype, shape):
            raise ValueError(f"cache: {path / name} is {got[0]} {list(got[1])}, meta.json says {dtype} {list(shape)}")
    return TeacherCache(path, meta, arrays, arrays.pop(STATS))


def verify_cache(cache_dir) -> None:
    """Recompute every checksum; raise CacheCorruptError naming the first bad chunk and its file."""
    cache = open_cache(cache_dir)
    arrays = {"embeddings.npy": cache.embeddings, "poses.npy": cache.poses, "histograms.npy": cache.histograms}
    chunks = _chunks(cache.num_objects, cache.meta["chunk_size"])
    recorded = cache.meta["chunks"]
    for k, s, e in chunks:
        for name in ARRAYS:
            expected = recorded[name][k] if k < len(recorded.get(name, [])) else None
            if _sha256(arrays[name][s:e]) != expected:
                raise CacheCorruptError(
                    f"cache: {cache.path / name} chunk {k} (objects {s}..{e - 1}) fails its checksum", name, k
                )
    if file_sha256(cache.path / STATS) != cache.meta["stats"]["sha256"]:
        raise CacheCorruptError(f"cache: {cache.path / STATS} fails its checksum", STATS)
