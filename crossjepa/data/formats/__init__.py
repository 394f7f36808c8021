"""``open_dataset``: a data spec ("synthetic:N" or a path) to a dataset, the format detected from what is on disk.

Detection, first match wins. A file, by extension:
  .h5/.hdf5  ScanObjectNN (name contains 'objectdataset') or any HDF5 with 'data' + 'label'
  .dat       Point-MAE's <prefix>_{split}_<K>pts_fps.dat
  .pkl       a few-shot fold (<way>way_<shot>shot/<fold>.pkl)
A file whose name says a split (training_*/test_*, *_train*/*_test*) is swapped for its sibling of the asked one.
A folder:
  packed     meta.json (format crossjepa-packed) + points.npy, in the folder or in <folder>/<split>/
  ShapeNet55 train.txt/test.txt with a shapenet_pc/ folder (also via ShapeNet-55/)
  ModelNet   *_shape_names.txt (normal_resampled) or *_{split}_<K>pts_fps.dat
  ModelNet40 HDF5   ply_data_*.h5
  ScanObjectNN      training_objectdataset*.h5 / test_objectdataset*.h5 (one variant per folder)
  class folders     <class>/<split>/<file> with .off .ply .pcd .npy .xyz .txt files
"""

from __future__ import annotations

import os
from pathlib import Path

from ...validate import check_choice
from .. import packed
from ..base import SplitNotFound, check_num_points
from . import classfolder, fewshot, hdf5, modelnet, shapenet

LAYOUTS = (
    "a packed folder (meta.json + points.npy)",
    "ShapeNet55 (shapenet_pc/ + train.txt/test.txt)",
    "ModelNet40 normal_resampled (*_shape_names.txt) or *_{split}_<K>pts_fps.dat",
    "ModelNet40 HDF5 (ply_data_*.h5)",
    "ScanObjectNN (training_objectdataset*.h5/test_objectdataset*.h5)",
    "class folders (<class>/<split>/<file>.{off,ply,pcd,npy,xyz,txt})",
)


def _synthetic(spec: str, split: str, num_points, seed: int):
    count = spec.split(":", 1)[1]
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"data spec: expected 'synthetic:N' with N a positive int, got {spec!r}")
    from ..synthetic import SyntheticShapes

    return SyntheticShapes(int(count), num_points=num_points or 2048, seed=seed, split=split)


def _open_file(path: Path, split: str, **options):
    ext = path.suffix.lower()
    if ext in (".h5", ".hdf5"):
        return hdf5.open_h5_file(path, split, **options)
    if ext == ".dat":
        return modelnet.open_dat_file(path, split, **options)
    if ext == ".pkl":
        return fewshot.open_fold(path, split, **options)
    raise ValueError(
        f"{path}: not a dataset file (expected .h5/.hdf5, .dat or a few-shot .pkl, "
        f"or a folder in one of these layouts: {'; '.join(LAYOUTS)})"
    )


def _open_folder(root: Path, split: str, **options):
    for candidate in (root, root / split):
        if packed.is_packed(candidate):
            check_choice("up_axis", options["up_axis"], (None, "y"), why=f"{candidate} is packed, stored y-up already")
            return packed.PackedDataset(candidate, split=split, num_points=options["num_points"])
    if any(packed.is_packed(child) for child in root.iterdir()):
        raise SplitNotFound(f"{root}: holds packed splits but no packed folder {root / split}")
    if shapenet.find(root):
        return shapenet.open_shapenet(root, split, **options)
    if modelnet.probe(root, split):
        return modelnet.open_modelnet(root, split, **options)
    if hdf5.probe_modelnet_h5(root):
        return hdf5.open_modelnet_h5(root, split, **options)
    if hdf5.probe_scanobjectnn(root):
        return hdf5.open_scanobjectnn(root, split, **options)
    if fewshot.is_fold_dir(root):
        raise ValueError(f"{root}: a few-shot folder holds several folds; pass one fold file, e.g. {root}/0.pkl")
    if classfolder.probe(root, split):
        return classfolder.open_class_folder(root, split, **options)
    raise ValueError(f"{root}: unknown dataset layout; looked for {'; '.join(LAYOUTS)}")


def open_dataset(spec, split: str = "train", num_points=None, *, normalize: bool = True, seed: int = 0, up_axis=None):
    """Open a data spec: "synthetic:N" (N procedural labelled shapes) or a path (format detected, see module
    doc). ``num_points``: None keeps stored clouds (meshes: base.DEFAULT_MESH_POINTS samples), else every
    cloud is resampled to it as described in crossjepa/data/base.py. Packed data is returned as stored
    (normalised when packed), so ``normalize`` does not apply to it. ``up_axis`` ("x", "y", "z"; None: the
    format's convention, z for class folders, y elsewhere) is turned onto crossjepa's +y up; packed data is
    stored that way already."""
    if not isinstance(split, str) or not split:
        raise ValueError(f"split: expected a non-empty string such as 'train' or 'test', got {split!r}")
    num_points = check_num_points(num_points)
    if isinstance(spec, str) and spec.startswith("synthetic:"):
        check_choice("up_axis", up_axis, (None, "y"), why="synthetic shapes are generated y-up")
        return _synthetic(spec, split, num_points, seed)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"spec: expected 'synthetic:N' or a path, got {type(spec).__name__}")
    path = Path(spec).expanduser()
    options = {"num_points": num_points, "normalize": normalize, "seed": seed, "up_axis": up_axis}
    if path.is_file():
        return _open_file(path, split, **options)
    if path.is_dir():
        return _open_folder(path, split, **options)
    raise ValueError(f"data path {path} does not exist (expected 'synthetic:N', a dataset file or folder)")
