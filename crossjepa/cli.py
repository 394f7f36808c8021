"""The `crossjepa` command (also `python -m crossjepa`).

Every subcommand's flags come from one declaration, its config dataclass (each field a flag, config_flags.py;
the flags several commands share from shared_settings.py). Every subcommand fails with a non-zero exit and one
clear line on bad input; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints usage + exits 2; keep it, but on one line
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# command: (module, config class, what it does). The modules are imported only for the command being run
# (eval's import torch), so that `crossjepa --help` stays instant.
COMMANDS = {
    "demo": ("crossjepa.demo", "DemoConfig", "offline end-to-end run on synthetic data (~minutes on a CPU)"),
    "render": ("crossjepa.commands", "RenderConfig", "write a PNG grid of rendered views for a few objects"),
    "cache": ("crossjepa.commands", "CacheConfig", "render views and embed them once with the frozen teacher"),
    "pretrain": ("crossjepa.train.config", "TrainConfig", "pretrain a point encoder against a teacher cache"),
    "probe": (
        "crossjepa.eval.config",
        "ProbeConfig",
        "linear-probe an encoder (C chosen by CV on the train split only)",
    ),
    "unseen": (
        "crossjepa.commands",
        "UnseenConfig",
        "carve unseen objects without pretraining (the file pretrain --unseen-fraction writes), for probe --unseen",
    ),
    "finetune": (
        "crossjepa.eval.config",
        "FinetuneConfig",
        "fine-tune encoder + head (epoch chosen on a validation part of train)",
    ),
    "fewshot": (
        "crossjepa.eval.config",
        "FewshotConfig",
        "N-way K-shot episodes (fold files or drawn), mean +- std over folds",
    ),
    "embed": ("crossjepa.eval.config", "EmbedConfig", "write encoder features of every object (memory-mappable .npy)"),
    "pack": ("crossjepa.commands", "PackConfig", "convert a dataset to the packed memory-mapped format"),
    "bench": (
        "crossjepa.perf.cli_args",
        "BenchConfig",
        "time ops, attention, loaders, the train step and the cache build vs references",
    ),
    "profile": (
        "crossjepa.perf.cli_args",
        "ProfileConfig",
        "profile pretraining steps: trace, top ops, stages, memory timeline",
    ),
}
# The long runs: their settings also load from YAML (--config), take --set overrides and --resume. Each with a
# --set example.
RUNS = {"pretrain": "optim.weight_decay=0.1", "finetune": "train.optim.layer_decay=0.75", "fewshot": "seeds=5"}


def config_class(command: str) -> type:
    module, name = COMMANDS[command][:2]
    return getattr(importlib.import_module(module), name)


class _HelpModel(argparse.Action):
    """--help-model: the model fields --model-set can set, with each preset's value, then exit."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from .config_flags import describe_fields
        from .models.config import PRESETS

        presets = {name: make() for name, make in PRESETS.items()}
        print(f"model fields (--model-set KEY=VALUE); values in the presets {' / '.join(presets)}:")
        print(describe_fields(presets))
        parser.exit(0)


def _add_command(sub, command: str, with_flags: bool) -> None:
    p = sub.add_parser(command, help=COMMANDS[command][2])
    if with_flags:
        from .config_flags import add_config_flags

        cls = config_class(command)
        p.description = cls.__doc__  # what the command does, in its settings' docstring
        add_config_flags(p, cls())
    if command in RUNS:
        p.add_argument("--config", help="YAML file with the command's config fields (the flags given override it)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"override any config field, e.g. --set {RUNS[command]} (repeatable)",
        )
        p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    if command == "pretrain":
        p.add_argument("--help-model", action=_HelpModel, help="list the model fields --model-set can set, and exit")


def build_parser(config_flags_for=tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The parser; `config_flags_for`: the commands that get their settings' flags (all by default)."""
    parser = _Parser(prog="crossjepa", description="CrossJEPA: pretrain 3D point encoders from a 2D teacher.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        _add_command(sub, command, command in config_flags_for)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)  # global options take no value
    parser = build_parser(config_flags_for=(command,) if command in COMMANDS else ())
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        from . import commands

        getattr(commands, f"run_{args.command}")(args)
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
