from __future__ import annotations

from pathlib import Path

import pytest

from lvseg.config import ConfigError, config_keys, load_config, parse_config
from lvseg.recipes.baseline import BaselineConfig
from lvseg.recipes.probe import ProbeConfig


def test_baseline_defaults_are_the_echonet_reference() -> None:
    config = parse_config({"recipe": "baseline"})
    assert isinstance(config, BaselineConfig)
    reference = dict(model="deeplabv3_resnet50", optimizer="sgd", lr=1e-5, momentum=0.9, weight_decay=0.0,
                     nesterov=False, batch_size=20, epochs=50, loss="bce", loss_reduction="sum",
                     schedule="constant", best_by="val_loss", seed=0, backbone_weights=None)
    assert {k: getattr(config, k) for k in reference} == reference


def test_probe_config_from_the_documented_example() -> None:
    config = parse_config({"recipe": "dinov2_probe", "backbone": "tiny", "image_size": 224, "head": "linear",
                           "layers": 1, "optimizer": "sgd", "lr": 1.0e-5, "momentum": 0.9, "weight_decay": 0.0,
                           "batch_size": 20, "loss": "bce", "schedule": "constant", "epochs": 50, "seed": 0})
    assert isinstance(config, ProbeConfig) and config.lr == 1e-5 and config.head == "linear"


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) for recipe baseline: head, learning_rate"):
        parse_config({"recipe": "baseline", "learning_rate": 0.1, "head": "linear"})


@pytest.mark.parametrize("key, value, message", [
    ("batch_size", 2.5, "batch_size: expected int, got 2.5"),
    ("batch_size", True, "batch_size: expected int, got True"),
    ("lr", "fast", "lr: expected float, got 'fast'"),
    ("nesterov", "yes", "nesterov: expected bool"),
    ("lr", -1.0, "lr: -1.0 must be > 0"),
    ("loss", "mse", "loss: 'mse' is not one of bce, ce, dice, bce_dice, focal"),
    ("optimizer", "lion", "optimizer: 'lion' is not one of sgd, adam, adamw"),
    ("model", "unet", "model: 'unet' is not one of"),
    ("warmup_epochs", 50, r"warmup_epochs: 50 must lie in \[0, epochs\)"),
])
def test_bad_values_are_named(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"recipe": "baseline", key: value}, source="my.yaml")


def test_probe_image_size_must_be_a_multiple_of_the_patch() -> None:
    # DINOv2's patches are 14 px: the backbone would floor 100 px to 7x7 patches without a word
    with pytest.raises(ConfigError, match="image_size: 100 must be a positive multiple of the patch size 14"):
        parse_config({"recipe": "dinov2_probe", "image_size": 100})
    assert [parse_config({"recipe": "dinov2_probe", "image_size": s}).image_size for s in (112, 448)] == [112, 448]


def test_unknown_or_missing_recipe() -> None:
    with pytest.raises(ConfigError, match="recipe: 'sam' is not a registered recipe"):
        parse_config({"recipe": "sam"})
    with pytest.raises(ConfigError, match="recipe: None"):
        parse_config({"lr": 0.1})


def test_yaml_one_point_one_floats_and_ints_as_floats(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("recipe: baseline\nlr: 1e-3\nweight_decay: 0\n")
    config = load_config(path)
    assert config.lr == 1e-3 and config.weight_decay == 0.0 and isinstance(config.weight_decay, float)


def test_bad_yaml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("recipe: [baseline\n")
    with pytest.raises(ConfigError, match="c.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="nothere.yaml"):
        load_config(tmp_path / "nothere.yaml")


def test_config_keys_and_round_trip() -> None:
    assert {"model", "lr", "batch_size"} <= config_keys("baseline")
    assert {"backbone", "head", "layers", "image_size"} <= config_keys("dinov2_probe")
    config = parse_config({"recipe": "dinov2_probe", "head": "conv"})
    assert parse_config(config.to_dict()) == config
