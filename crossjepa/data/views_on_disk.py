"""Rendered views on disk (ULIP-style PNGs with known azimuths) as a view source for the teacher cache.

Layout, one folder per object (or ULIP's flat folder, where all objects' files sit in the root):
    <root>/<name>/<name>_r_<azimuth><suffix>.png     e.g. chair_0001/chair_0001_r_030.png
    <root>/<name>_r_<azimuth><suffix>.png            flat layout
    <root>/views.json                                optional: {"elevation_deg": 30.0, "radius": 3.2}
<azimuth> is the camera's azimuth in whole degrees, three digits ("000" to "359"); <suffix> tells render
kinds apart ("" for colour, "_depth0001" for ULIP's depth images). Every object has the same azimuths.

Poses (camera-to-world, OpenCV axes, world y-up: the convention of crossjepa.render.cameras): the camera sits at
radius * (cos(el) sin(az), sin(el), cos(el) cos(az)) and looks at the origin with the image up along +y, so
azimuth 0 looks from +z and azimuth 90 from +x. Elevation and radius come from the arguments, else views.json,
else 0 degrees and 3.2 (the renderer's default radius).

Images: PNG -> RGB (grey is expanded, an alpha channel is dropped, so renders should have an opaque
background), resized to image_size x image_size (bilinear, antialiased), float32 in [0, 1] (the teacher
normalises). With CUDA and DALI, a DALI pipeline decodes and resizes on the GPU and returns CUDA tensors;
otherwise PIL does it on the CPU. backend="dali" on a machine without CUDA runs DALI's CPU pipeline.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from crossjepa.render.cameras import look_at

from ..validate import check_choice, check_int, check_positive

DEFAULT_RADIUS = 3.2
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SETTINGS = ("elevation_deg", "radius")


def view_path(root, name: str, azimuth_deg: int, suffix: str = "", flat: bool = False) -> Path:
    """Where the view of object `name` at `azimuth_deg` lives (for writers of the layout too)."""
    folder = Path(root) if flat else Path(root) / name
    return folder / f"{name}_r_{int(azimuth_deg):03d}{suffix}.png"


def orbit_poses(
    azimuths_deg: Sequence[float], elevation_deg: float = 0.0, radius: float = DEFAULT_RADIUS
) -> torch.Tensor:
    """Camera-to-world poses (V, 4, 4) at the given azimuths on a ring (see the module docstring)."""
    az = torch.deg2rad(torch.as_tensor(azimuths_deg, dtype=torch.float64))
    el = torch.deg2rad(torch.tensor(float(elevation_deg), dtype=torch.float64))
    eye = radius * torch.stack((el.cos() * az.sin(), el.sin().expand_as(az), el.cos() * az.cos()), dim=-1)
    return look_at(eye.float())


def _read_settings(root: Path) -> dict:
    path = root / "views.json"
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt file {path}: {e}") from None
    unknown = set(settings) - set(_SETTINGS) if isinstance(settings, dict) else {"<not an object>"}
    if unknown:
        raise ValueError(f"{path}: expected an object with keys {_SETTINGS}, got {sorted(unknown)}")
    return settings


class ViewsOnDisk:
    """View source for the teacher cache (crossjepa.teacher.views): ``views(object_indices) -> (images
    (N,V,3,H,W) float32 in [0, 1], poses (N,V,4,4) float32)``, both on the decoding device; ``num_views`` and
    ``settings`` (what identifies these views in the cache's meta.json).

    names: the object name of each dataset index: a dataset (its ``.names``) or a list of names; default:
    the root's sub-folders, sorted.
    azimuths: which views, in whole degrees; default: every azimuth found for the first object.
    """

    def __init__(
        self,
        root,
        names=None,
        *,
        azimuths: Optional[Sequence[int]] = None,
        suffix: str = "",
        image_size: int = 224,
        elevation_deg: Optional[float] = None,
        radius: Optional[float] = None,
        backend: str = "auto",
        device=None,
        batch_size: int = 64,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"root: no such directory {self.root}")
        check_int("image_size", image_size, 1)
        check_int("batch_size", batch_size, 1)
        check_choice("backend", backend, ("auto", "pil", "dali"))
        self.suffix, self.image_size, self.batch_size = suffix, image_size, batch_size
        if names is None:
            names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        elif hasattr(names, "names"):
            names = names.names
        self.names = [str(n) for n in names]
        if not self.names:
            raise ValueError(f"names: expected at least one object, found no object folders in {self.root}")
        self.flat = not (self.root / self.names[0]).is_dir()
        self.azimuths = self._find_azimuths() if azimuths is None else [int(a) for a in azimuths]
        if (
            not self.azimuths
            or len(set(self.azimuths)) != len(self.azimuths)
            or not all(0 <= a < 360 for a in self.azimuths)
        ):
            raise ValueError(f"azimuths: expected distinct whole degrees in [0, 360), got {self.azimuths}")
        settings = _read_settings(self.root)
        self.elevation_deg = float(elevation_deg if elevation_deg is not None else settings.get("elevation_deg", 0.0))
        self.radius = check_positive("radius", radius if radius is not None else settings.get("radius", DEFAULT_RADIUS))
        self.poses = orbit_poses(self.azimuths, self.elevation_deg, self.radius)
        self.backend, self.device = self._resolve_backend(backend, device)
        self._pipe = None

    @property
    def num_views(self) -> int:
        return len(self.azimuths)

    @property
    def settings(self) -> dict:
        return {
            "source": "disk",
            "root": str(self.root.resolve()),
            "layout": "flat" if self.flat else "folders",
            "suffix": self.suffix,
            "azimuths_deg": self.azimuths,
            "elevation_deg": self.elevation_deg,
            "radius": self.radius,
            "image_size": self.image_size,
        }

    def __len__(self) -> int:
        return len(self.names)

    def path(self, index: int, azimuth_deg: int) -> Path:
        return view_path(self.root, self.names[index], azimuth_deg, self.suffix, self.flat)

    def _find_azimuths(self):
        name = self.names[0]
        pattern = re.compile(re.escape(name) + r"_r_(\d{3})" + re.escape(self.suffix) + r"\.png")
        folder = self.root if self.flat else self.root / name
        found = sorted(int(m.group(1)) for p in folder.iterdir() if (m := pattern.fullmatch(p.name)))
        if not found:
            raise ValueError(
                f"no views found: looked for {view_path(folder, name, 0, self.suffix, True).name} "
                f"(any azimuth) in {folder}"
            )
        return found

    def _resolve_backend(self, backend, device):
        cuda = torch.cuda.is_available()
        if backend == "auto":
            backend = "dali" if cuda and _dali_available() else "pil"
        if backend == "pil":
            return "pil", torch.device("cpu")
        if device is None:
            device = "cuda" if cuda else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or a CUDA device, got {device}")
        return "dali", device

    def __call__(self, object_indices) -> Tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(object_indices, dtype=torch.int64).reshape(-1).tolist()
        for i in index:
            if not 0 <= i < len(self.names):
                raise IndexError(f"object_indices: {i} out of range for {len(self.names)} objects")
        paths = [self.path(i, a) for i in index for a in self.azimuths]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"view not found: {p}")
        s, v = self.image_size, self.num_views
        if self.backend == "pil":
            images = torch.from_numpy(np.stack([_decode_pil(p, s) for p in paths])).permute(0, 3, 1, 2)
            images = images.float().div_(255.0)
        else:
            images = torch.cat(
                [self._decode_dali(paths[k : k + self.batch_size]) for k in range(0, len(paths), self.batch_size)]
            )
        poses = self.poses.to(self.device).expand(len(index), v, 4, 4).contiguous()
        return images.reshape(len(index), v, 3, s, s), poses

    # ------------------------------------------------------------------------------------------ DALI path

    def _build(self):
        from nvidia.dali import fn, pipeline_def, types

        gpu = self.device.type == "cuda"

        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=min(4, os.cpu_count() or 1),
            device_id=self.device.index if gpu else None,
            prefetch_queue_depth=1,
        )
        def graph():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8)
            image = fn.decoders.image(encoded, device="mixed" if gpu else "cpu", output_type=types.RGB)
            image = fn.resize(
                image, size=[self.image_size, self.image_size], interp_type=types.INTERP_LINEAR, antialias=True
            )
            return fn.crop_mirror_normalize(
                image, dtype=types.FLOAT, output_layout="CHW", mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0]
            )

        pipe = graph()
        pipe.build()
        return pipe

    def _decode_dali(self, paths):
        from nvidia.dali.plugin.pytorch import feed_ndarray

        encoded = [_read_png(p) for p in paths]
        if self._pipe is None:
            self._pipe = self._build()
        try:
            (out,) = self._pipe.run(encoded=encoded)
        except RuntimeError as e:
            self._pipe = None  # a failed DALI pipeline cannot run again
            for p in paths:  # name the file PIL cannot read either
                _decode_pil(p, self.image_size)
            raise ValueError(
                f"DALI could not decode one of {paths[0]} ... {paths[-1]}: {str(e).strip().splitlines()[0]}"
            ) from None
        tensor = out.as_tensor()
        images = torch.empty(tensor.shape(), dtype=torch.float32, device=self.device)
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        return feed_ndarray(tensor, images, cuda_stream=stream)


def _dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def _read_png(path: Path) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8)
    if data[:8].tobytes() != _PNG_SIGNATURE:
        raise ValueError(f"corrupt file {path}: not a PNG file")
    return data


def _decode_pil(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    data = _read_png(path)
    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"corrupt file {path}: {e}") from None
