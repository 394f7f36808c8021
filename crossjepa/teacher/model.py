"""The frozen image teacher: any timm model, images in [0, 1] -> one embedding per image."""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..hashing import file_sha256
from ..validate import check_choice, check_int
from .inference import optimize_for_inference
from .torchvision_stub import missing_torchvision, standing_in
from .weights import PACKAGES, package_weights

__all__ = ["DEFAULT_TEACHER", "POOLINGS", "Teacher", "load_teacher"]

_log = logging.getLogger(__name__)
POOLINGS = ("cls", "mean", "both")
# Installs offline with its ImageNet weights (crossjepa.teacher.weights); GPU users with DINOv2 weights pass
# --teacher vit_base_patch14_dinov2 --teacher-weights FILE.
DEFAULT_TEACHER = "tf_efficientnet_lite0"
_NESTED_KEYS = ("state_dict", "model")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _import_timm():
    """timm; imported with the torchvision stand-in only when it is not imported yet and torchvision is missing."""
    missing = None if "timm" in sys.modules else missing_torchvision()
    try:
        if missing is None:
            import timm
        else:
            with standing_in(*missing):
                import timm
    except ModuleNotFoundError as exc:
        if exc.name == "timm":
            raise ModuleNotFoundError(
                "the teacher needs timm, which is not installed: pip install --no-deps timm"
            ) from None
        raise
    return timm


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class Teacher(nn.Module):
    """A frozen timm model in eval mode. ``forward(images (N,3,H,W) in [0,1]) -> (N, embed_dim) float32``.

    Images are resized to ``image_size`` if needed and normalised with the model's pretrained mean/std.
    Pooling: "cls" = the model's pooled pre-logits output (the CLS token for ViTs), "mean" = mean of the
    patch tokens (spatial mean for CNNs), "both" = their concatenation.
    With ``optimize`` (the default) the model runs with its BatchNorms folded and channels-last weights
    (crossjepa.teacher.inference): the same embeddings up to float rounding, 2-3x cheaper for a CNN on a CPU;
    ``optimize=False`` runs the model as timm builds it. ``params_sha256`` always hashes the original weights.
    """

    def __init__(
        self,
        model: nn.Module,
        name: str,
        weights_id: str,
        pooling: str,
        image_size: int,
        weights_source: str = "unknown",
        optimize: bool = True,
    ):
        super().__init__()
        model.requires_grad_(False).eval()
        self._params_sha256 = _params_sha256(model) if optimize else None
        self.optimized = False
        if optimize:
            # Deterministic, not constant (every channel must vary for the check), and off the global RNG.
            example = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
            fast = optimize_for_inference(model, example, lambda m, x: m.forward_features(x))
            model, self.optimized = fast, fast is not model
        self.model = model
        self.name = name
        self.weights_id = weights_id
        self.weights_source = weights_source
        self.pooling = pooling
        self.image_size = image_size
        cfg = getattr(model, "pretrained_cfg", None) or {}
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()
        probe = torch.full((1, 3, image_size, image_size), 0.5)  # not random: leaves the global RNG alone
        self.embed_dim = int(self(probe).shape[1])

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)  # frozen: stays in eval mode whatever a parent module asks

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def params_sha256(self) -> str:
        """sha256 of all parameters and buffers (names, dtypes, shapes, bytes): identifies the weights."""
        if self._params_sha256 is None:
            self._params_sha256 = _params_sha256(self.model)
        return self._params_sha256

    def _patch_mean(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim == 3:
            return feats[:, getattr(self.model, "num_prefix_tokens", 0) :].mean(dim=1)
        channels_last = getattr(self.model, "output_fmt", "NCHW") == "NHWC"
        return feats.mean(dim=(1, 2) if channels_last else (2, 3))

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images: expected a tensor (N, 3, H, W) with values in [0, 1], got {got}")
        x = images.to(self.device, torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        x = (x - self.mean) / self.std
        if self.optimized:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=x.is_cuda):
            feats = self.model.forward_features(x)
            if self.pooling == "mean":
                out = self._patch_mean(feats)
            else:
                out = self.model.forward_head(feats, pre_logits=True)
                if self.pooling == "both":
                    out = torch.cat([out, self._patch_mean(feats)], dim=1)
        return out.float()


def _params_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"teacher weights: no such file {path}")
    suffix = path.suffix.lower()
    check_choice(f"teacher weights {path}", suffix, (".safetensors", ".pth", ".pt"))
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure means the same thing to the user: unreadable file
        raise ValueError(f"teacher weights: cannot read {path} ({_first_line(exc)})") from exc
    while isinstance(state, dict) and any(isinstance(state.get(k), dict) for k in _NESTED_KEYS):
        state = next(state[k] for k in _NESTED_KEYS if isinstance(state.get(k), dict))
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"teacher weights: {path} does not hold a state dict (name -> tensor)")
    cleaned = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    return cleaned


def _load_weights(model: nn.Module, name: str, path: Path) -> None:
    state = _read_state_dict(path)
    # timm's per-architecture converter (original DINOv2/CLIP layouts, position-embedding resampling).
    convert = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if convert is not None:
        try:
            state = convert(state, model)
        except Exception as exc:  # converters fail in many ways on foreign files; all mean "wrong file"
            raise ValueError(f"teacher weights: {path} does not fit timm model {name!r} ({_first_line(exc)})") from exc
    classifiers = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    state = {k: v for k, v in state.items() if not any(k.startswith(c + ".") for c in classifiers)}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"teacher weights: {path} does not fit timm model {name!r} ({_first_line(exc)})") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"teacher weights: {path} does not fit timm model {name!r}: "
            f"{len(result.missing_keys)} missing keys {result.missing_keys[:3]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:3]}"
        )


def _create(timm, name: str, image_size: int, pretrained: bool) -> nn.Module:
    kwargs = dict(pretrained=pretrained, num_classes=0)
    try:
        return timm.create_model(name, img_size=image_size, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
        return timm.create_model(name, **kwargs)  # models without a fixed input size (CNNs)


def load_teacher(
    name: str = DEFAULT_TEACHER,
    weights: str | Path | None = None,
    random_init: bool = False,
    pooling: str = "cls",
    image_size: int = 224,
    device: str | torch.device = "cpu",
    seed: int = 0,
    optimize: bool = True,
) -> Teacher:
    """Build a frozen teacher from a timm model name.

    Weights, in this order: ``weights`` (a local .safetensors/.pth/.pt state dict, possibly nested under "model"
    or "state_dict"); an installed weights package known for ``name`` (crossjepa.teacher.weights.PACKAGES,
    converted once); timm's pretrained download; else one error naming all three. Only with
    ``random_init=True``: a random initialisation drawn from ``seed`` (deterministic, so a resumed cache build
    gets the same teacher). ``Teacher.weights_source`` says which was used. ``optimize``: see ``Teacher``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a timm model name, got {name!r}")
    check_choice("pooling", pooling, POOLINGS)
    check_int("image_size", image_size, 1)
    if weights is not None and random_init:
        raise ValueError("weights: expected no weights file together with random_init=True")
    timm = _import_timm()
    if not timm.is_model(name):
        raise ValueError(f"name: unknown timm model {name!r}")

    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _create(timm, name, image_size, pretrained=False)
        weights_id, source = "random-init", "random-init"
        _log.warning(
            "TEACHER %s IS RANDOMLY INITIALISED (random_init=True, seed=%d): its embeddings carry no "
            "pretrained knowledge; recorded as weights_id='random-init'",
            name,
            seed,
        )
        return Teacher(model, name, weights_id, pooling, image_size, source, optimize).to(device)
    if weights is not None:
        path = Path(weights)
        model = _create(timm, name, image_size, pretrained=False)
        _load_weights(model, name, path)
        weights_id, source = file_sha256(path), f"file:{path}"
    elif (
        packaged := package_weights(name, lambda: timm.create_model(name, pretrained=False), file_sha256)
    ) is not None:
        path, weights_id = packaged
        model = _create(timm, name, image_size, pretrained=False)
        _load_weights(model, name, path)
        source = f"package:{PACKAGES[name].pip_name}"
    else:
        try:
            model = _create(timm, name, image_size, pretrained=True)
        except Exception as exc:  # network, hub and missing-tag failures all need the same advice
            package = PACKAGES.get(name)
            offline = (
                f"`pip install {package.pip_name}`"
                if package
                else f"an installed weights package (known for: {', '.join(sorted(PACKAGES))})"
            )
            raise RuntimeError(
                f"teacher {name!r}: no weights: no --teacher-weights FILE given, no {offline}, and timm's "
                f"pretrained download failed ({_first_line(exc)})"
            ) from exc
        weights_id, source = "timm-pretrained", "timm-hub"
    _log.info("teacher %s: weights from %s (%s)", name, source, weights_id[:12])
    return Teacher(model, name, weights_id, pooling, image_size, source, optimize).to(device)
