"""The `crossjepa` command (also `python -m crossjepa`).

Every subcommand fails with a non-zero exit and one clear line on bad input; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints usage + exits 2; keep it, but on one line
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain a point encoder against a teacher cache")
    p.add_argument("--data", required=True, help="dataset spec: a path or synthetic:N")
    p.add_argument("--cache", required=True, help="teacher cache directory (crossjepa cache)")
    p.add_argument("--out", required=True, help="output directory (checkpoints, model.safetensors, metrics)")
    p.add_argument("--config", help="YAML file with TrainConfig fields")
    p.add_argument("--preset", help="model preset: default | tiny")
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--max-steps", type=int, help="train for exactly N optimizer steps")
    steps.add_argument("--epochs", type=int, help="train for E passes over the data")
    p.add_argument("--batch-size", type=int, help="objects per step (over all processes)")
    p.add_argument("--views", type=int, dest="views_per_object", help="views per object per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--checkpoint-every", type=int, help="write a checkpoint every K steps")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--loader", choices=["torch", "device", "dali"])
    p.add_argument("--num-points", type=int, help="points per cloud fed to the model (default: the model's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any TrainConfig field, e.g. --set optim.weight_decay=0.1 (repeatable)")
    p.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model config field, e.g. --model-set encoder.depth=4 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")


def _add_probe(sub) -> None:
    p = sub.add_parser("probe", help="linear-probe an encoder (C chosen by CV on the train split only)")
    p.add_argument("--data", required=True, help="dataset spec: a path or synthetic:N")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="model.safetensors written by pretrain")
    src.add_argument("--random-init", action="store_true", help="a random-init encoder (the baseline)")
    src.add_argument("--teacher-cache", metavar="DIR", help="the teacher ceiling: probe the teacher's own "
                     "view-averaged embeddings from this cache (built from --data)")
    p.add_argument("--test-cache", metavar="DIR", help="with --teacher-cache: the test split's cache")
    p.add_argument("--preset", default="default", help="model preset for --random-init")
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (mean +- std)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds for choosing C")
    p.add_argument("--num-points", type=int, help="points per cloud (default: the model's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--solver", choices=["fast", "sklearn"], default="fast",
                   help="fast: batched torch solver on --device (default); sklearn: liblinear, to check a number "
                        "(the same objective, LinearSVC's primal)")


def _add_encoder_source(p, out_help: str) -> None:
    """Arguments shared by finetune and fewshot: data, encoder, output, config overrides, resume."""
    p.add_argument("--data", required=True, help="dataset spec: a path or synthetic:N")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="model.safetensors written by pretrain")
    src.add_argument("--random-init", action="store_true", help="a random-init encoder (the baseline)")
    p.add_argument("--preset", help="model preset for --random-init: default | tiny")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--config", help="YAML file with the command's config fields")
    p.add_argument("--epochs", type=int, help="training epochs (per seed / per episode)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set train.optim.layer_decay=0.75 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")


def _add_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune encoder + head (epoch chosen on a validation part of train)")
    _add_encoder_source(p, "output directory (report.json, training_curve.png, per-seed checkpoints)")
    p.add_argument("--seeds", type=int, help="number of seeds (mean +- std), default 3")
    p.add_argument("--val-fraction", type=float, help="stratified validation part of the train split (0.1)")
    p.add_argument("--vote", type=int, help="also report test accuracy averaged over K augmented copies")


def _add_fewshot(sub) -> None:
    p = sub.add_parser("fewshot", help="N-way K-shot episodes (fold files or drawn), mean +- std over folds")
    _add_encoder_source(p, "output directory (report.json, one record per episode)")
    p.add_argument("--way", type=int, help="classes per episode (5)")
    p.add_argument("--shot", type=int, help="support objects per class (10)")
    p.add_argument("--folds", type=int, help="episodes (10)")
    p.add_argument("--query", type=int, help="query objects per class of a drawn episode (20)")
    p.add_argument("--head", choices=["finetune", "linear"], help="per episode: fine-tune, or a linear SVM")
    p.add_argument("--seed", type=int, help="seed of drawn episodes and inits (0)")


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
    p.add_argument("--teacher", help="timm model name (default: tf_efficientnet_lite0, ImageNet weights "
                   "installed offline by pip; e.g. vit_base_patch14_dinov2 with --teacher-weights)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--teacher-weights", help="local .safetensors/.pth weights for the teacher")
    w.add_argument("--teacher-random-init", action="store_true", help="random teacher (tests, offline demo only)")
    p.add_argument("--image-size", type=int, help="teacher input resolution (default: the model's)")
    p.add_argument("--pooling", choices=["cls", "mean", "both"], default="cls")
    p.add_argument("--views", type=int, default=12, help="views per object")
    p.add_argument("--views-dir", help="embed existing renders from this folder instead of rendering")
    p.add_argument("--num-points", type=int, default=2048, help="points used for rendering")
    p.add_argument("--batch-size", type=int, default=64, help="images per teacher batch")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build")
    p.add_argument("--overwrite", action="store_true", help="replace a finished cache built differently")


def build_parser() -> argparse.ArgumentParser:
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
    r.add_argument("--num-points", type=int, default=2048,
                   help="points per object: larger clouds are subsampled, smaller ones repeated")

    _add_cache(sub)
    _add_pretrain(sub)
    _add_probe(sub)
    _add_finetune(sub)
    _add_fewshot(sub)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
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
        kind = "" if isinstance(err, (ValueError, TypeError, FileNotFoundError)) else \
            f"{type(err).__name__}: "
        print(f"crossjepa {args.command}: error: {kind}{message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
