"""Fine-tuning and few-shot settings: typed dataclasses, loadable from YAML and overridable with
`--set key=value` (crossjepa/config_io.py), as pretraining's are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Tuple

from ..data.transforms import ROTATIONS, AugmentConfig
from ..train.config import OptimConfig


def _at_least(owner: str, minimum: int, **values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{owner}.{name}: expected an int >= {minimum}, got {value!r}")


def _fraction(owner: str, **values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{owner}.{name}: expected a number in (0, 1), got {value!r}")


@dataclass
class FinetuneOptim(OptimConfig):
    """AdamW + warmup/cosine (pretraining's build_optimizer), Point-MAE's fine-tuning values, and layer-wise
    learning-rate decay: block i of D gets lr * layer_decay ** (D - i), the tokenizer/embeddings
    layer_decay ** (D + 1), the final norm and the head lr (1.0 turns it off, as in Point-MAE)."""

    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_fraction: float = 10 / 300
    min_lr_ratio: float = 0.002
    grad_clip: float = 10.0
    layer_decay: float = 1.0  # checked by ClassifierTraining; OptimConfig checks the rest


@dataclass
class FinetuneAugment:
    """Point-MAE's per-axis scale and translate; rotation "auto" turns on rotation about the up axis for
    scanned data (ScanObjectNN), whose objects are not aligned, and leaves aligned CAD data unrotated."""

    rotation: str = "auto"
    up_axis: int = 1
    scale: Optional[Tuple[float, float]] = (2 / 3, 3 / 2)
    translate: float = 0.2
    jitter_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.rotation not in ("auto", *ROTATIONS):
            raise ValueError(f"augment.rotation: expected one of auto, {', '.join(ROTATIONS)}, got {self.rotation!r}")
        try:
            self.resolve(scanned=False)
        except ValueError as err:
            raise ValueError(f"augment.{err}") from None

    def resolve(self, scanned: bool) -> AugmentConfig:
        rotation = ("up" if scanned else "none") if self.rotation == "auto" else self.rotation
        return AugmentConfig(rotation=rotation, up_axis=self.up_axis, jitter_sigma=self.jitter_sigma,
                             scale=None if self.scale is None else tuple(self.scale), translate=self.translate)


@dataclass
class ClassifierTraining:
    """One training run of encoder + classification head (a fine-tuning seed, or a few-shot episode)."""

    epochs: int = 300
    batch_size: int = 32
    num_points: Optional[int] = None  # None -> the encoder's tokenizer setting
    label_smoothing: float = 0.2  # Point-BERT's smoothed cross-entropy
    head_hidden: int = 256
    head_dropout: float = 0.5
    augment: FinetuneAugment = field(default_factory=FinetuneAugment)
    optim: FinetuneOptim = field(default_factory=FinetuneOptim)
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    checkpoint_every: int = 10  # epochs
    num_workers: Optional[int] = None  # torch loader workers; None -> min(4, CPUs)

    def __post_init__(self) -> None:
        _at_least("train", 1, epochs=self.epochs, batch_size=self.batch_size, head_hidden=self.head_hidden,
                  checkpoint_every=self.checkpoint_every)
        if self.num_points is not None:
            _at_least("train", 1, num_points=self.num_points)
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"train.label_smoothing: expected a number in [0, 1), got {self.label_smoothing!r}")
        decay = self.optim.layer_decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
            raise ValueError(f"train.optim.layer_decay: expected a number in (0, 1], got {decay!r}")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"train.head_dropout: expected a number in [0, 1), got {self.head_dropout!r}")


@dataclass
class FinetuneConfig:
    data: str = ""
    out: str = "runs/finetune"
    checkpoint: Optional[str] = None  # model.safetensors from pretraining; or random_init
    random_init: bool = False
    preset: str = "default"  # architecture of a random-init encoder
    seeds: int = 3  # seeds 0..seeds-1: head init, validation carve, batch order; mean +- std over them
    val_fraction: float = 0.1  # of the training split, stratified: the ONLY data model selection sees
    test_fraction: float = 0.2  # carved from the training split only when the source has no test split
    vote: int = 0  # K > 0: also report test accuracy with logits averaged over K augmented copies
    device: str = "auto"
    train: ClassifierTraining = field(default_factory=ClassifierTraining)

    def __post_init__(self) -> None:
        _at_least("finetune", 1, seeds=self.seeds)
        _at_least("finetune", 0, vote=self.vote)
        _fraction("finetune", val_fraction=self.val_fraction, test_fraction=self.test_fraction)


@dataclass
class FewshotConfig:
    data: str = ""
    out: str = "runs/fewshot"
    checkpoint: Optional[str] = None
    random_init: bool = False
    preset: str = "default"
    way: int = 5
    shot: int = 10
    folds: int = 10  # episodes: fold files 0..folds-1, or drawn episodes
    query: int = 20  # query objects per class in drawn episodes (fold files carry their own)
    head: Literal["finetune", "linear"] = "finetune"
    cv_folds: int = 5  # linear head: C by this many CV folds on the support set (at most `shot`)
    seed: int = 0
    device: str = "auto"
    train: ClassifierTraining = field(default_factory=lambda: ClassifierTraining(epochs=150))

    def __post_init__(self) -> None:
        _at_least("fewshot", 1, shot=self.shot, folds=self.folds, query=self.query)
        _at_least("fewshot", 2, way=self.way, cv_folds=self.cv_folds)
        _at_least("fewshot", 0, seed=self.seed)
