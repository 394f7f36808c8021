"""Crash-safe checkpoints and final weights.

A checkpoint is a directory `OUT/checkpoints/step_<N>/` holding `model.safetensors` (weights) and `state.pt`
(optimizer, scheduler, RNG, step). It is written under a temporary name and renamed; then the one-line pointer
file `OUT/checkpoints/latest` is replaced atomically. A kill at any moment therefore leaves `latest` naming a
complete checkpoint. Final weights go to `OUT/model.safetensors` with the model config in the file's metadata,
so `load_pretrained` needs nothing else.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_dir, atomic_target, write_text
from ..config_io import from_dict, to_dict

_CONFIG_KEY = "crossjepa.model_config"


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; contiguous clones keep the file self-contained.
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """Write weights (+ model config as metadata) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "crossjepa-model-v1"}
    config = getattr(model, "config", None)
    if config is not None:
        metadata[_CONFIG_KEY] = json.dumps(to_dict(config))
    with atomic_target(path) as tmp:
        save_file(_state_dict(model), str(tmp), metadata=metadata)
    return path


def load_pretrained(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a CrossJEPA model from a file written by `save_weights`."""
    from safetensors import safe_open

    from ..models import build
    from ..models.config import ModelConfig

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"checkpoint {path}: not a readable safetensors file ({err})") from None
    if _CONFIG_KEY not in metadata:
        raise ValueError(f"checkpoint {path}: no crossjepa model config in its metadata (not written by crossjepa?)")
    config = from_dict(ModelConfig, json.loads(metadata[_CONFIG_KEY]))
    model = build(config=config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path}: weights do not match the model "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys)"
        )
    return model.to(device)


def rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out_dir: str | Path, step: int, model: torch.nn.Module, state: dict[str, Any], keep: int = 2
) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, prune all but the newest `keep`."""
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    with atomic_dir(final) as tmp:
        save_file(_state_dict(model), str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
    write_text(root / "latest", final.name + "\n")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    pointer = Path(out_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "state.pt").is_file() else None


def load_checkpoint(path: Path, model: torch.nn.Module) -> dict[str, Any]:
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return torch.load(path / "state.pt", weights_only=False)
