"""The `crossjepa` command (also `python -m crossjepa`).

Every subcommand fails with a non-zero exit and one clear line on bad input; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints usage + exits 2; keep it, but on one line
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# The commands whose settings are a config dataclass: each field is a flag (config_flags.py). Their modules are
# imported only for the command being run (eval's import torch), so that `crossjepa --help` stays instant.
# command: (module, config class, what it does, a --set example)
CONFIG_COMMANDS = {
    "pretrain": (
        "crossjepa.train.config",
        "TrainConfig",
        "pretrain a point encoder against a teacher cache",
        "optim.weight_decay=0.1",
    ),
    "finetune": (
        "crossjepa.eval.finetune_config",
        "FinetuneConfig",
        "fine-tune encoder + head (epoch chosen on a validation part of train)",
        "train.optim.layer_decay=0.75",
    ),
    "fewshot": (
        "crossjepa.eval.finetune_config",
        "FewshotConfig",
        "N-way K-shot episodes (fold files or drawn), mean +- std over folds",
        "train.optim.layer_decay=0.75",
    ),
}


def config_class(command: str) -> type:
    module, name = CONFIG_COMMANDS[command][:2]
    return getattr(importlib.import_module(module), name)


def _add_config_command(sub, command: str, with_flags: bool) -> None:
    summary, example = CONFIG_COMMANDS[command][2:]
    p = sub.add_parser(command, help=summary)
    if with_flags:
        from .config_flags import add_config_flags

        add_config_flags(p, config_class(command)())
    p.add_argument("--config", help="YAML file with the command's config fields (the flags given override it)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override any config field, e.g. --set {example} (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")


def _add_probe(sub) -> None:
    p = sub.add_parser("probe", help="linear-probe an encoder (C chosen by CV on the train split only)")
    p.add_argument("--data", required=True, help="dataset spec: a path or synthetic:N")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="model.safetensors written by pretrain")
    src.add_argument("--random-init", action="store_true", help="a random-init encoder (the baseline)")
    src.add_argument(
        "--teacher-cache",
        metavar="DIR",
        help="the teacher ceiling: probe the teacher's own "
        "view-averaged embeddings from this cache (built from --data)",
    )
    p.add_argument("--test-cache", metavar="DIR", help="with --teacher-cache: the test split's cache")
    p.add_argument(
        "--unseen",
        metavar="FILE",
        help="unseen_objects.json (from pretrain --unseen-fraction or "
        "crossjepa unseen): choose C and fit on the other training objects, score once on these",
    )
    p.add_argument("--preset", default="default", help="model preset for --random-init")
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (mean +- std)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for choosing C")
    p.add_argument("--num-points", type=int, help="points per cloud (default: the model's)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--solver",
        choices=["fast", "sklearn"],
        default="fast",
        help="fast: batched torch solver on --device (default); sklearn: liblinear, to check a number "
        "(the same objective, LinearSVC's primal)",
    )


def _add_unseen(sub) -> None:
    p = sub.add_parser(
        "unseen",
        help="carve unseen objects without pretraining (the file pretrain "
        "--unseen-fraction writes), for probe --unseen",
    )
    p.add_argument("--data", required=True, help="dataset spec: a path or synthetic:N")
    p.add_argument("--out", required=True, help="output JSON file (unseen_objects.json)")
    p.add_argument("--fraction", type=float, default=0.2, help="stratified fraction of the objects (0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the carve (pretrain's --unseen-seed, 0)")


def _add_embed(sub) -> None:
    p = sub.add_parser("embed", help="write encoder features of every object (memory-mappable .npy)")
    p.add_argument("--data", required=True, help="dataset spec: a path or synthetic:N")
    p.add_argument("--checkpoint", required=True, help="model.safetensors written by pretrain")
    p.add_argument("--out", required=True, help="FEATS.npy (labels: FEATS.labels.npy, names: FEATS.json)")
    p.add_argument("--split", default="train")
    p.add_argument("--tokens", action="store_true", help="all output tokens instead of the pooled features")
    p.add_argument("--num-points", type=int, help="points per cloud (default: the model's)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="FPS start seed (tokenizers with a random start)")
    p.add_argument("--device", default="auto")


def _add_cache(sub) -> None:
    p = sub.add_parser("cache", help="render views and embed them once with the frozen teacher")
    p.add_argument("--data", help="dataset spec: a path or synthetic:N")
    p.add_argument("--out", help="cache directory to build")
    p.add_argument("--verify", metavar="DIR", help="recompute the checksums of a finished cache")
    p.add_argument(
        "--teacher",
        help="timm model name (default: tf_efficientnet_lite0, ImageNet weights "
        "installed offline by pip; e.g. vit_base_patch14_dinov2 with --teacher-weights)",
    )
    w = p.add_mutually_exclusive_group()
    w.add_argument("--teacher-weights", help="local .safetensors/.pth weights for the teacher")
    w.add_argument("--teacher-random-init", action="store_true", help="random teacher (tests, offline demo only)")
    p.add_argument("--image-size", type=int, help="teacher input resolution (default: the model's)")
    p.add_argument("--pooling", choices=["cls", "mean", "both"], default="cls")
    p.add_argument("--split", default="train", help="the dataset split to cache (train; test for a test split's cache)")
    p.add_argument("--views", type=int, default=12, help="views per object")
    p.add_argument(
        "--shading", choices=("normal", "depth", "lambert"), default="normal", help="how rendered views are coloured"
    )
    p.add_argument("--point-radius", type=float, help="splat radius in pixels (default: from image size and points)")
    p.add_argument("--views-dir", help="embed existing renders from this folder instead of rendering")
    p.add_argument("--num-points", type=int, default=2048, help="points used for rendering")
    p.add_argument("--batch-size", type=int, default=64, help="images per teacher batch")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build")
    p.add_argument("--overwrite", action="store_true", help="replace a finished cache built differently")


def build_parser(config_flags_for=tuple(CONFIG_COMMANDS)) -> argparse.ArgumentParser:
    """The parser; `config_flags_for`: the config commands that get their settings' flags (all by default)."""
    parser = _Parser(prog="crossjepa", description="CrossJEPA: pretrain 3D point encoders from a 2D teacher.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="offline end-to-end run on synthetic data (~minutes on a CPU)")
    d.add_argument("--out", default="demo_out", help="output directory")
    d.add_argument("--objects", type=int, default=600, help="synthetic training objects")
    d.add_argument("--test-objects", type=int, default=400, help="synthetic test objects")
    d.add_argument("--steps", type=int, default=1200, help="pretraining steps")
    d.add_argument("--seeds", type=int, default=3, help="probe seeds (mean +- std)")
    d.add_argument("--device", default="auto")

    r = sub.add_parser("render", help="write a PNG grid of rendered views for a few objects")
    r.add_argument("--data", required=True, help="dataset spec: a path or synthetic:N")
    r.add_argument("--out", required=True, help="output directory (view_grid.png)")
    r.add_argument("--objects", type=int, default=6)
    r.add_argument("--views", type=int, default=6)
    r.add_argument("--image-size", type=int, default=224)
    r.add_argument(
        "--num-points",
        type=int,
        default=2048,
        help="points per object: larger clouds are subsampled, smaller ones repeated",
    )

    _add_cache(sub)
    _add_config_command(sub, "pretrain", "pretrain" in config_flags_for)
    _add_probe(sub)
    _add_unseen(sub)
    _add_config_command(sub, "finetune", "finetune" in config_flags_for)
    _add_config_command(sub, "fewshot", "fewshot" in config_flags_for)
    _add_embed(sub)

    k = sub.add_parser("pack", help="convert a dataset to the packed memory-mapped format")
    k.add_argument("src", help="dataset spec: a path or synthetic:N")
    k.add_argument("out", help="output directory")
    k.add_argument("--split", default="train")
    k.add_argument("--num-points", type=int, default=2048, help="points per object (FPS subsample)")

    from .perf.cli_args import add_bench_parser, add_profile_parser

    add_bench_parser(sub)
    add_profile_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)  # global options take no value
    parser = build_parser(config_flags_for=(command,) if command in CONFIG_COMMANDS else ())
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from . import commands

    handler = getattr(commands, f"run_{args.command}")
    try:
        handler(args)
    except KeyboardInterrupt:
        print(f"crossjepa {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line for the user; --debug for the traceback
        if args.debug:
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        kind = "" if isinstance(err, (ValueError, TypeError, FileNotFoundError)) else f"{type(err).__name__}: "
        print(f"crossjepa {args.command}: error: {kind}{message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
