"""Settings are defined once: every command's flags come from its config dataclass (every field is a flag, every
flag a field, nothing written by hand besides --help, and --config/--set/--resume of the long runs), each flag
sets its field, the flag names users already type keep working, and `pretrain --help-model` lists every model
field."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from crossjepa.cli import COMMANDS, RUNS, build_parser, config_class, main
from crossjepa.config_flags import config_from_args
from crossjepa.models.config import ModelConfig

# The flags of each command before they were generated from the fields: public, so they must keep working.
EXISTING_FLAGS = {
    "demo": {"--device", "--objects", "--out", "--seeds", "--steps", "--test-objects"},
    "render": {"--data", "--image-size", "--num-points", "--objects", "--out", "--views"},
    "cache": {
        "--batch-size",
        "--data",
        "--device",
        "--image-size",
        "--num-points",
        "--out",
        "--overwrite",
        "--point-radius",
        "--pooling",
        "--resume",
        "--shading",
        "--split",
        "--teacher",
        "--teacher-random-init",
        "--teacher-weights",
        "--verify",
        "--views",
        "--views-dir",
    },
    "probe": {
        "--checkpoint",
        "--data",
        "--device",
        "--folds",
        "--num-points",
        "--out",
        "--preset",
        "--random-init",
        "--seeds",
        "--solver",
        "--teacher-cache",
        "--test-cache",
        "--unseen",
    },
    "unseen": {"--data", "--fraction", "--out", "--seed"},
    "embed": {
        "--batch-size",
        "--checkpoint",
        "--data",
        "--device",
        "--num-points",
        "--out",
        "--seed",
        "--split",
        "--tokens",
    },
    "pack": {"--num-points", "--split"},
    "bench": {"--case-budget", "--compile", "--device", "--out", "--quick", "--suite"},
    "profile": {"--batch-size", "--device", "--out", "--preset", "--steps", "--views"},
    "pretrain": {
        "--data",
        "--cache",
        "--out",
        "--config",
        "--preset",
        "--max-steps",
        "--epochs",
        "--batch-size",
        "--views",
        "--lr",
        "--checkpoint-every",
        "--seed",
        "--device",
        "--loader",
        "--num-points",
        "--set",
        "--model-set",
        "--resume",
    },
    "finetune": {
        "--data",
        "--checkpoint",
        "--random-init",
        "--preset",
        "--out",
        "--config",
        "--epochs",
        "--batch-size",
        "--lr",
        "--device",
        "--set",
        "--resume",
        "--seeds",
        "--val-fraction",
        "--vote",
        "--unseen",
        "--label-fraction",
    },
    "fewshot": {
        "--data",
        "--checkpoint",
        "--random-init",
        "--preset",
        "--out",
        "--config",
        "--epochs",
        "--batch-size",
        "--lr",
        "--device",
        "--set",
        "--resume",
        "--way",
        "--shot",
        "--folds",
        "--query",
        "--head",
        "--seed",
        "--unseen",
    },
}
# What the required flags are given when another flag is under test.
REQUIRED = {
    "demo": [],
    "render": ["--data", "synthetic:8", "--out", "o"],
    "cache": [],
    "pretrain": ["--data", "synthetic:8", "--cache", "c", "--out", "o"],
    "probe": ["--data", "synthetic:8", "--out", "o", "--random-init"],
    "unseen": ["--data", "synthetic:8", "--out", "o"],
    "finetune": ["--data", "synthetic:8", "--out", "o", "--random-init"],
    "fewshot": ["--data", "synthetic:8", "--out", "o", "--random-init"],
    "embed": ["--data", "synthetic:8", "--checkpoint", "c", "--out", "o"],
    "pack": ["src", "out"],
    "bench": [],
    "profile": [],
}
# String fields with a fixed set of values, and the exclusive flags that stand in for a required one under test.
STRINGS = {"device": "cpu", "suite": "ops"}
EXCLUSIVE = {"checkpoint", "random_init", "teacher_cache"}
HAND_WRITTEN = {"help", "config", "set", "resume", "help_model"}  # the only flags not made from a field


def _subparser(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command]


def _leaves(config, prefix=""):
    """{dotted key: (annotation, default)} of every leaf field of the dataclass instance `config`."""
    hints, out = typing.get_type_hints(type(config)), {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_leaves(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = (hints[f.name], value)
    return out


def _config_flags(command):
    """{dotted config key: option strings} of the command's config flags."""
    return {
        a.dest.split(":", 1)[1]: a.option_strings
        for a in _subparser(command)._actions
        if a.dest.startswith(("config:", "config+:"))
    }


def _other_value(key, annotation, default):
    """(command-line words, the value the field must then hold): a valid value other than the default."""
    name = key.rsplit(".", 1)[-1]
    args = typing.get_args(annotation)
    if type(None) in args:
        annotation = next(a for a in args if a is not type(None))
        args = typing.get_args(annotation)
        default = 6 if default is None and annotation is int else default
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return [], not default
    if origin is typing.Literal:
        choice = next(a for a in args if a != default)
        return [choice], choice
    if origin is tuple:
        value = tuple(x / 2 for x in default)
        return [str(x) for x in value], value
    if origin is list:
        return ["encoder.depth=2"], default + ["encoder.depth=2"]
    if annotation is int:
        return [str(default + 1)], default + 1
    if annotation is float and key == "fraction":
        return ["0.25"], 0.25
    if annotation is float:
        value = default / 2 if default else 0.25
        return [str(value)], value
    value = STRINGS.get(name, f"{name}-value")
    return [value], value


@pytest.mark.parametrize("command", COMMANDS)
def test_every_config_field_is_a_flag_and_every_flag_a_field(command):
    assert set(_config_flags(command)) == set(_leaves(config_class(command)()))
    actions = _subparser(command)._actions
    assert {a.dest for a in actions if not a.dest.startswith(("config:", "config+:"))} <= HAND_WRITTEN
    assert all(
        a.help and not a.help.startswith(" (default") for a in actions if a.dest.startswith(("config:", "config+:"))
    )
    assert EXISTING_FLAGS[command] <= {o for a in actions for o in a.option_strings}
    assert {"config", "set", "resume"} <= {a.dest for a in actions} or command not in RUNS


@pytest.mark.parametrize("command", COMMANDS)
def test_each_flag_sets_its_field(command):
    parser, cls, flags = build_parser(), config_class(command), _config_flags(command)
    for key, (annotation, default) in _leaves(cls()).items():
        words, expected = _other_value(key, annotation, default)
        positional = not flags[key]
        option = key if positional else f"--no-{flags[key][0][2:]}" if annotation is bool and default else flags[key][0]
        required = [w for w in REQUIRED[command] if not (key in EXCLUSIVE | {"test_cache"} and w == "--random-init")]
        if key == "test_cache":  # it goes with --teacher-cache only
            required += ["--teacher-cache", "t"]
        if positional:  # replace the positional's own word in REQUIRED
            required = [words[0] if w == key else w for w in required]
        value = config_from_args(
            cls, parser.parse_args([command, *required, *([] if positional else [option, *words])])
        )
        for part in key.split("."):
            value = getattr(value, part)
        assert value == expected != default, key


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_not_given_leave_the_defaults(command):
    cls = config_class(command)
    given = config_from_args(cls, build_parser().parse_args([command, *REQUIRED[command]]))
    option_keys = {o: key for key, options in _config_flags(command).items() for o in options}
    set_by_required = {option_keys.get(w, w) for w in REQUIRED[command]} & set(_leaves(cls()))
    changed = {key for key, (_, default) in _leaves(cls()).items() if _leaves(given)[key][1] != default}
    assert changed == set_by_required


def test_help_model_lists_every_model_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--help-model"])
    assert exit_info.value.code == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert listed == set(_leaves(ModelConfig()))


def test_set_comes_after_the_flags_and_list_flags_add_to_the_list(tmp_path):
    (tmp_path / "run.yaml").write_text("model_overrides: [encoder.width=64]\noptim:\n  lr: 0.01\n")
    args = build_parser().parse_args(
        [
            "pretrain",
            *REQUIRED["pretrain"],
            "--config",
            str(tmp_path / "run.yaml"),
            "--lr",
            "0.5",
            "--set",
            "optim.lr=0.25",
            "--model-set",
            "encoder.depth=2",
            "--model-set",
            "encoder.heads=2",
        ]
    )
    config = config_from_args(config_class("pretrain"), args)
    assert config.optim.lr == 0.25
    assert config.model_overrides == ["encoder.width=64", "encoder.depth=2", "encoder.heads=2"]


def test_steps_and_epochs_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pretrain", *REQUIRED["pretrain"], "--epochs", "2", "--max-steps", "3"])
    assert "not allowed with argument" in capsys.readouterr().err
