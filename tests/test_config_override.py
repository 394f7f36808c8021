"""config_io.override: the one way a config is overridden (CLI `--set` strings, model presets' keyword args)."""

import pytest

from crossjepa.config_io import apply_overrides, override
from crossjepa.models.config import EncoderConfig, preset_config
from crossjepa.train.config import TrainConfig


def test_dotted_keys_section_dicts_and_whole_sub_configs():
    tiny = preset_config("tiny")
    deeper = override(tiny, {"encoder.depth": 2})
    assert deeper.encoder.depth == 2 and deeper.encoder.width == tiny.encoder.width
    merged = override(tiny, {"encoder": {"depth": 2}})  # a dict is merged into the section
    assert merged == deeper
    whole = EncoderConfig(width=64, heads=4, depth=1)
    assert override(tiny, {"encoder": whole}).encoder == whole


def test_strings_presets_and_keyword_overrides_agree():
    by_strings = apply_overrides(preset_config("tiny"), ["encoder.depth=2", "predictor.conditioning=adaln"])
    by_mapping = override(preset_config("tiny"), {"encoder.depth": 2, "predictor.conditioning": "adaln"})
    by_preset = preset_config("tiny", **{"encoder.depth": 2}, predictor={"conditioning": "adaln"})
    assert by_strings == by_mapping == by_preset


def test_a_repeated_key_counts_where_it_was_given_last():
    cfg = apply_overrides(TrainConfig(), ["optim.lr=0.1", "optim={'weight_decay': 0.2}", "optim.lr=0.3"])
    assert cfg.optim.lr == 0.3 and cfg.optim.weight_decay == 0.2


@pytest.mark.parametrize(
    "updates, message",
    [
        ({"encoder.depht": 2}, "override 'encoder.depht': unknown key 'depht'"),
        ({"encoder.depth.x": 2}, "override 'encoder.depth.x': 'depth' is not a config section"),
        ({"encoder": {"depht": 2}}, "unknown config key encoder.depht"),
        ({"tokenizer.fps_start": "middle"}, "tokenizer.fps_start: expected one of"),
        ({"encoder.depth": "deep"}, "encoder.depth: expected int"),
    ],
)
def test_bad_overrides_are_one_error_naming_the_key(updates, message):
    with pytest.raises(ValueError, match=message):
        override(preset_config("tiny"), updates)


def test_a_string_without_equals_is_refused():
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        apply_overrides(TrainConfig(), ["optim.lr"])
