"""Model configuration: nested typed dataclasses and the named presets.

Every architectural decision the CrossJEPA paper leaves open is a field here, so it can be set from YAML / the
CLI and ablated. Fields are plain ints/floats/strs/bools so they round-trip through YAML unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config_io import override, setting
from ..validate import check_choice, check_int, check_number, check_positive

FPS_STARTS = ("zero", "random")
CONDITIONINGS = ("token", "adaln", "both")
PREDICTOR_INPUTS = ("tokens", "pooled")
ROTATION_FORMATS = ("matrix", "6d")
ROTATION_FRAMES = ("c2w", "w2c")


def _positive_ints(owner: str, **values) -> None:
    for name, value in values.items():
        check_int(f"{owner}.{name}", value, 1)


@dataclass
class TokenizerConfig:
    """Point cloud -> patch tokens: FPS centers, kNN groups, mini-PointNet patch embedding.

    num_points is the cloud size the loaders and feature extraction feed; the tokenizer itself accepts any
    P >= max(num_groups, group_size).
    """

    num_points: int = setting(1024, "points per cloud the loaders and the feature extractor feed")
    num_groups: int = setting(64, "patch tokens: FPS centers per cloud")
    group_size: int = setting(32, "nearest neighbours per center")
    fps_start: str = setting("zero", "FPS start point: zero (index 0) or random")
    local_hidden: int = setting(128, "mini-PointNet, per point: 3 -> local_hidden -> local_out, max-pool")
    local_out: int = setting(256, "mini-PointNet per-point output width")
    global_hidden: int = setting(512, "mini-PointNet: concat(point, pooled) 2*local_out -> global_hidden -> width")
    pos_hidden: int = setting(128, "positional MLP on centers: 3 -> pos_hidden -> width")

    def __post_init__(self) -> None:
        _positive_ints(
            "tokenizer",
            num_points=self.num_points,
            num_groups=self.num_groups,
            group_size=self.group_size,
            local_hidden=self.local_hidden,
            local_out=self.local_out,
            global_hidden=self.global_hidden,
            pos_hidden=self.pos_hidden,
        )
        check_choice("tokenizer.fps_start", self.fps_start, FPS_STARTS)
        need = max(self.num_groups, self.group_size)
        check_int("tokenizer.num_points", self.num_points, need, why="num_groups and group_size")


@dataclass
class EncoderConfig:
    """Pre-norm transformer over [cls, patch tokens]; positional embedding added before every block."""

    width: int = setting(384, "token width")
    heads: int = setting(6, "attention heads")
    depth: int = setting(6, "transformer blocks")
    mlp_ratio: float = setting(2.5, "MLP hidden width / token width")
    drop_path: float = setting(0.1, "stochastic depth rate of the last block (linear from 0)")
    readout_layers: int = setting(1, "probe/embed features: pooled patch tokens averaged over the last N blocks")

    def __post_init__(self) -> None:
        _positive_ints(
            "encoder", width=self.width, heads=self.heads, depth=self.depth, readout_layers=self.readout_layers
        )
        check_positive("encoder.mlp_ratio", self.mlp_ratio)
        check_int("encoder.readout_layers", self.readout_layers, 1, self.depth, why="depth")
        if self.width % self.heads:
            raise ValueError(f"encoder.heads: expected a divisor of width {self.width}, got {self.heads}")
        check_number("encoder.drop_path", self.drop_path, 0, 1, hi_open=True)


@dataclass
class PredictorConfig:
    """Small transformer over the encoder tokens plus one query token per view.

    conditioning: "token" adds the condition vector to the query token, "adaln" modulates every block's
    LayerNorms and residual gates (adaLN), "both" does both.
    input: "tokens" reads every encoder output token; "pooled" reads only the encoder's probe features
    (concat(max, mean) of its patch tokens), so what the predictor needs must be in what the probe reads.
    """

    width: int = setting(384, "token width")
    depth: int = setting(3, "transformer blocks")
    heads: int = setting(6, "attention heads")
    mlp_ratio: float = setting(3.5, "MLP hidden width / token width")
    drop_path: float = setting(0.0, "stochastic depth rate of the last block (linear from 0)")
    conditioning: str = setting("token", "how the view condition enters: token, adaln or both")
    input: str = setting("pooled", "tokens or pooled (measured: the probe features then carry what it uses)")

    def __post_init__(self) -> None:
        _positive_ints("predictor", width=self.width, heads=self.heads, depth=self.depth)
        check_positive("predictor.mlp_ratio", self.mlp_ratio)
        check_choice("predictor.input", self.input, PREDICTOR_INPUTS)
        if self.width % self.heads:
            raise ValueError(f"predictor.heads: expected a divisor of width {self.width}, got {self.heads}")
        check_number("predictor.drop_path", self.drop_path, 0, 1, hi_open=True)
        check_choice("predictor.conditioning", self.conditioning, CONDITIONINGS)


@dataclass
class ConditionConfig:
    """View condition: camera rotation + position (Fourier-encoded) and the view's colour histogram -> MLP.

    The rotation is taken from the camera-to-world pose ("c2w": camera axes in world coordinates) or its
    inverse ("w2c"), as the full 3x3 matrix (9 numbers) or its first two columns ("6d").
    """

    frequencies: int = setting(6, "Fourier bands 2^0..2^(F-1) (times pi) per pose number, plus the raw value")
    histogram_bins: int = setting(8, "colour histogram bins per channel")
    hidden: int = setting(384, "condition MLP width")
    rotation_format: str = setting("matrix", "camera rotation as the 3x3 matrix or 6d (its first two columns)")
    rotation_frame: str = setting("c2w", "camera rotation of the c2w pose or of its inverse (w2c)")
    use_pose: bool = setting(True, "condition on the camera pose")
    # Off by default: our renderer colours a view by its surface normals, so the view's histogram describes the
    # object's shape, and a predictor that reads it needs little from the encoder (measured: the encoder then
    # learns less). Turn it on for renders whose colours the points cannot know (textured renders from disk).
    use_histogram: bool = setting(False, "condition on the view's colour histogram")

    def __post_init__(self) -> None:
        _positive_ints("condition", histogram_bins=self.histogram_bins, hidden=self.hidden)
        check_int("condition.frequencies", self.frequencies, 0)
        check_choice("condition.rotation_format", self.rotation_format, ROTATION_FORMATS)
        check_choice("condition.rotation_frame", self.rotation_frame, ROTATION_FRAMES)
        if not (self.use_pose or self.use_histogram):
            raise ValueError("condition.use_pose/use_histogram: expected at least one of them to be true")


@dataclass
class ModelConfig:
    tokenizer: TokenizerConfig = setting(factory=TokenizerConfig, help="point cloud -> patch tokens")
    encoder: EncoderConfig = setting(factory=EncoderConfig, help="the point encoder")
    predictor: PredictorConfig = setting(factory=PredictorConfig, help="predicts the teacher's view embeddings")
    condition: ConditionConfig = setting(factory=ConditionConfig, help="the view condition")
    teacher_dim: int = setting(768, "teacher embedding width (set from the cache by pretrain)")

    def __post_init__(self) -> None:
        check_int("model.teacher_dim", self.teacher_dim, 1)


def _default() -> ModelConfig:
    # Paper size: encoder 8.53M (target 8.5M), encoder + predictor + conditioner 14.08M (target 14.1M)
    # with teacher_dim=768; tests/test_models.py pins both.
    return ModelConfig()


def _tiny() -> ModelConfig:
    # CPU tests and the offline demo: same structure, 0.72M parameters (~0.2 s per step of 32 objects x 4
    # views on 2 CPU cores).
    return ModelConfig(
        tokenizer=TokenizerConfig(
            num_points=512,
            num_groups=32,
            group_size=16,
            local_hidden=32,
            local_out=64,
            global_hidden=128,
            pos_hidden=64,
        ),
        encoder=EncoderConfig(width=128, heads=4, depth=3, mlp_ratio=2.0, drop_path=0.0),
        predictor=PredictorConfig(width=128, depth=1, heads=4, mlp_ratio=2.0),
        condition=ConditionConfig(frequencies=4, hidden=128),
    )


PRESETS = {"default": _default, "tiny": _tiny}
PRESET_NAMES = tuple(PRESETS)


def preset_config(preset: str = "default", teacher_dim: int | None = None, **overrides) -> ModelConfig:
    """The named preset with overrides applied.

    Overrides name a ModelConfig field: a sub-config instance, a dict of its fields ({"depth": 4}), or a
    dotted key (**{"encoder.depth": 4}); they go through config_io.override, as `--set` strings do.
    """
    check_choice("preset", preset, PRESETS)
    cfg = PRESETS[preset]()
    if teacher_dim is not None:
        overrides["teacher_dim"] = teacher_dim
    return override(cfg, overrides)
