"""Typed configs: YAML files, dotted overrides and errors naming the bad field."""

import dataclasses
from pathlib import Path

import pytest

from mmv_tf.config import ConfigError, from_dict, load_yaml, merge, parse_overrides, to_dict
from mmv_tf.models.presets import ModelConfig, preset_config
from mmv_tf.training.config import load_train_config

CONFIGS = Path(__file__).parents[1] / "configs"


def test_overrides_change_nested_fields_with_types_checked():
    config = preset_config("s3dg_tiny")
    updated = merge(config, parse_overrides(["head.design=shared", "video.width=0.5",
                                             "audio.sample_rate=8000"]))
    assert updated.head.design == "shared" and updated.video.width == 0.5
    assert updated.audio.sample_rate == 8000 and updated.text == config.text
    assert config.head.design == "fac"  # the preset itself is untouched
    assert from_dict(ModelConfig, to_dict(updated)) == updated


@pytest.mark.parametrize("override,message", [
    ("head.desing=shared", r"unknown config key head\.desing"),
    ("head.design=triple", r"head\.design: 'triple' is not one of"),
    ("video.num_frames=many", r"video\.num_frames: expected int"),
    ("nonsense", r"not of the form key\.path=value"),
])
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        merge(preset_config("s3dg"), parse_overrides([override]))


def test_yaml_files_load_and_errors_name_the_file(tmp_path):
    good = tmp_path / "model.yaml"
    good.write_text("head:\n  design: disjoint\nvideo:\n  num_frames: 8\n")
    config = merge(preset_config("s3dg_tiny"), load_yaml(good))
    assert config.head.design == "disjoint" and config.video.num_frames == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml must hold a mapping"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_yaml(tmp_path / "missing.yaml")


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'big'.*s3dg, tsm_resnet50"):
        preset_config("big")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_every_committed_config_loads(path):
    assert load_train_config(path).train.steps > 0


def test_the_retraining_recipe_is_the_default_models_trained_longer():
    committed, retrain = (load_train_config(CONFIGS / name)
                          for name in ("demo_gpu.yaml", "demo_gpu_retrain.yaml"))
    assert retrain.train.steps > 4 * committed.train.steps
    assert retrain.train.batch_size == committed.train.batch_size
    assert dataclasses.replace(retrain, train=committed.train) == committed
