"""Evaluation settings (probe, embed, fine-tuning, few-shot): typed dataclasses whose fields are the commands'
flags (crossjepa/config_flags.py); fine-tuning's and few-shot's also load from YAML and take `--set key=value`
overrides (crossjepa/config_io.py), as pretraining's do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Tuple

from .. import shared_settings as shared
from ..config_io import setting
from ..data.transforms import ROTATIONS, AugmentConfig
from ..models.config import PRESET_NAMES
from ..train.config import OptimConfig
from ..validate import check_choice, check_device, check_int, check_number
from .probe import SOLVERS

CHECKPOINT_HELP = "model.safetensors written by pretrain"
RANDOM_INIT_HELP = "a random-init encoder (the baseline)"
PRESET_HELP = "model preset for --random-init"
FINETUNE_ROTATIONS = ("auto", *ROTATIONS)
HEADS = ("finetune", "linear")


@dataclass
class EncoderEvaluation:
    """What every evaluation of an encoder is given: the data, where its results go (each command says what it
    writes there), which encoder, and the device."""

    data: str = shared.data()
    out: str = shared.out("directory")
    checkpoint: Optional[str] = setting(None, CHECKPOINT_HELP, required=True, one_of="encoder")
    random_init: bool = setting(False, RANDOM_INIT_HELP, required=True, one_of="encoder")
    preset: Literal[PRESET_NAMES] = setting("default", PRESET_HELP)
    device: str = shared.device()

    def __post_init__(self) -> None:
        check_choice("preset", self.preset, PRESET_NAMES)
        check_device("device", self.device)


@dataclass
class ProbeConfig(EncoderEvaluation):
    """`crossjepa probe`: the linear probe of an encoder, or of the teacher's own embeddings."""

    out: str = shared.out("JSON file")
    teacher_cache: Optional[str] = setting(
        None,
        "the teacher ceiling: probe the teacher's own view-averaged embeddings from this cache (built from --data)",
        required=True,
        one_of="encoder",
        metavar="DIR",
    )
    test_cache: Optional[str] = setting(None, "with --teacher-cache: the test split's cache", metavar="DIR")
    unseen: Optional[str] = setting(
        None,
        "unseen_objects.json (from pretrain --unseen-fraction or crossjepa unseen): choose C and fit on the other "
        "training objects, score once on these",
        metavar="FILE",
    )
    seeds: int = setting(3, "number of seeds (mean +- std)")
    folds: int = setting(5, "cross-validation folds for choosing C")
    num_points: Optional[int] = shared.model_points()
    solver: Literal[SOLVERS] = setting(
        "fast",
        "fast: batched torch solver on --device; sklearn: liblinear, to check a number (the same objective, "
        "LinearSVC's primal)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("seeds", self.seeds, 1)
        check_int("folds", self.folds, 2)
        check_int("num_points", self.num_points, 1, optional=True)
        check_choice("solver", self.solver, SOLVERS)
        if self.test_cache and not self.teacher_cache:
            raise ValueError("--test-cache: expected only together with --teacher-cache")
        if self.test_cache and self.unseen:
            raise ValueError("--test-cache: expected either it or --unseen, not both")


@dataclass
class EmbedConfig:
    """`crossjepa embed`: encoder features of every object (crossjepa/eval/features.py)."""

    data: str = shared.data()
    checkpoint: str = setting("", CHECKPOINT_HELP, required=True)
    out: str = shared.out("FEATS.npy (labels: FEATS.labels.npy, names: FEATS.json)")
    split: str = setting("train", "the dataset split to embed")
    tokens: bool = setting(False, "all output tokens instead of the pooled features")
    num_points: Optional[int] = shared.model_points()
    batch_size: int = setting(64, "clouds per batch")
    seed: int = setting(0, "point subsample and FPS start seed (the probe's seed S gives the same features)")
    device: str = shared.device()

    def __post_init__(self) -> None:
        check_int("num_points", self.num_points, 1, optional=True)
        check_int("batch_size", self.batch_size, 1)
        check_int("seed", self.seed, 0)
        check_device("device", self.device)


@dataclass
class FinetuneOptim(OptimConfig):
    """AdamW + warmup/cosine (train/optim.py's build_optimizer, as in pretraining), Point-MAE's fine-tuning
    values, and layer-wise learning-rate decay: block i of D gets lr * layer_decay ** (D - i), the
    tokenizer/embeddings layer_decay ** (D + 1), the final norm and the head lr (1.0 turns it off, as in
    Point-MAE)."""

    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_fraction: float = 10 / 300
    min_lr_ratio: float = 0.002
    grad_clip: float = 10.0
    layer_decay: float = setting(1.0, "layer-wise learning-rate decay (1 turns it off)")  # ClassifierTraining checks it


@dataclass
class FinetuneAugment:
    """Point-MAE's per-axis scale and translate; rotation "auto" turns on rotation about the up axis for
    scanned data (ScanObjectNN), whose objects are not aligned, and leaves aligned CAD data unrotated."""

    rotation: Literal[FINETUNE_ROTATIONS] = setting("auto", "auto: up for scanned data, else none")
    up_axis: int = setting(1, "the axis rotation 'up' turns about (0, 1, 2)")
    scale: Optional[Tuple[float, float]] = setting((2 / 3, 3 / 2), "per-axis random scale range (LOW HIGH)")
    translate: float = setting(0.2, "random translation range")
    jitter_sigma: float = setting(0.0, "per-point Gaussian jitter")

    def __post_init__(self) -> None:
        check_choice("train.augment.rotation", self.rotation, FINETUNE_ROTATIONS)
        try:
            self.resolve(scanned=False)
        except ValueError as err:
            raise ValueError(f"train.augment.{err}") from None

    def resolve(self, scanned: bool) -> AugmentConfig:
        rotation = ("up" if scanned else "none") if self.rotation == "auto" else self.rotation
        return AugmentConfig(
            rotation=rotation,
            up_axis=self.up_axis,
            jitter_sigma=self.jitter_sigma,
            scale=None if self.scale is None else tuple(self.scale),
            translate=self.translate,
        )


@dataclass
class ClassifierTraining:
    """One training run of encoder + classification head (a fine-tuning seed, or a few-shot episode)."""

    epochs: int = setting(300, "training epochs (per seed / per episode)")
    batch_size: int = setting(32, "objects per step")
    num_points: Optional[int] = shared.model_points()
    label_smoothing: float = setting(0.2, "Point-BERT's smoothed cross-entropy")
    head_hidden: int = setting(256, "hidden width of the classification head")
    head_dropout: float = setting(0.5, "dropout in the classification head")
    augment: FinetuneAugment = setting(factory=FinetuneAugment, help="training augmentation")
    optim: FinetuneOptim = setting(factory=FinetuneOptim, help="optimizer: AdamW, warmup then cosine decay")
    amp: bool = setting(True, "bf16 autocast on CUDA; ignored on CPU")
    checkpoint_every: int = setting(10, "write a checkpoint every K epochs")
    num_workers: Optional[int] = setting(None, "torch loader workers (default: min(4, CPUs))")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "head_hidden", "checkpoint_every"):
            check_int(f"train.{name}", getattr(self, name), 1)
        check_int("train.num_points", self.num_points, 1, optional=True)
        check_number("train.label_smoothing", self.label_smoothing, 0, 1, hi_open=True)
        check_number("train.optim.layer_decay", self.optim.layer_decay, 0, 1, lo_open=True)
        check_number("train.head_dropout", self.head_dropout, 0, 1, hi_open=True)


@dataclass
class FinetuneConfig(EncoderEvaluation):
    """`crossjepa finetune`: per seed, encoder + head trained on the training split, the epoch chosen on a
    stratified validation part of it, the test split scored once."""

    out: str = shared.out("directory (report.json, training_curve.png, per-seed checkpoints)", "runs/finetune")
    seeds: int = setting(3, "seeds 0..N-1 (head init, validation carve, batch order): mean +- std over them")
    val_fraction: float = setting(
        0.1, "stratified validation part of the train split: the ONLY data model selection sees"
    )
    test_fraction: float = setting(0.2, "test part carved from the train split when the source has no test split")
    unseen: Optional[str] = setting(
        None,
        "unseen_objects.json (pretrain --unseen-fraction or crossjepa unseen): these objects are the test part, "
        "never trained or selected on",
    )
    label_fraction: float = setting(
        1.0, "stratified fraction of the training part (after the validation carve) whose labels are used"
    )
    vote: int = setting(0, "K > 0: also report test accuracy with logits averaged over K augmented copies")
    train: ClassifierTraining = setting(factory=ClassifierTraining, help="training of each seed")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("seeds", self.seeds, 1)
        check_int("vote", self.vote, 0)
        for name in ("val_fraction", "test_fraction"):
            check_number(name, getattr(self, name), 0, 1, lo_open=True, hi_open=True)
        check_number("label_fraction", self.label_fraction, 0, 1, lo_open=True)


@dataclass
class FewshotConfig(EncoderEvaluation):
    """`crossjepa fewshot`: N-way K-shot episodes from fold files or drawn from the data, mean +- std over
    episodes."""

    out: str = shared.out("directory (report.json, one record per episode)", "runs/fewshot")
    way: int = setting(5, "classes per episode")
    shot: int = setting(10, "support objects per class")
    folds: int = setting(10, "episodes: fold files 0..N-1, or drawn episodes")
    query: int = setting(20, "query objects per class of a drawn episode (fold files carry their own)")
    head: Literal[HEADS] = setting("finetune", "per episode: fine-tune, or a linear SVM")
    cv_folds: int = setting(5, "linear head: C by this many CV folds on the support set (at most --shot)")
    unseen: Optional[str] = setting(
        None, "unseen_objects.json: drawn episodes take their query objects from it, support from the rest"
    )
    seed: int = setting(0, "seed of drawn episodes and inits")
    train: ClassifierTraining = setting(factory=lambda: ClassifierTraining(epochs=150), help="training of each episode")

    def __post_init__(self) -> None:
        for name, lowest in (("shot", 1), ("folds", 1), ("query", 1), ("way", 2), ("cv_folds", 2), ("seed", 0)):
            check_int(name, getattr(self, name), lowest)
        super().__post_init__()
        check_choice("head", self.head, HEADS)
