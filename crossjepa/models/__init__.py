"""CrossJEPA model: tokenizer, point encoder, view conditioner, predictor, loss."""

from __future__ import annotations

from .config import PRESETS, ModelConfig, preset_config
from .crossjepa import CrossJEPA, count_parameters, describe
from .loss import crossjepa_loss

__all__ = ["PRESETS", "CrossJEPA", "ModelConfig", "build", "count_parameters", "crossjepa_loss", "describe"]


def build(
    preset: str = "default", teacher_dim: int | None = None, *, config: ModelConfig | None = None, **overrides
) -> CrossJEPA:
    """A CrossJEPA model from a named preset ("default" paper size, "tiny" for CPU) or a full `config`.

    teacher_dim: width of the teacher embeddings to predict (None keeps the config's, 768 in both presets).
    overrides: ModelConfig fields, as sub-configs, dicts of fields, or dotted keys (**{"encoder.depth": 4}).
    """
    if config is not None:
        if overrides or teacher_dim is not None:
            raise ValueError("config: expected either a full config or preset/teacher_dim/overrides, not both")
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config: expected a ModelConfig, got {type(config).__name__}")
        return CrossJEPA(config)
    return CrossJEPA(preset_config(preset, teacher_dim, **overrides))
