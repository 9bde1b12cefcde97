"""Precise BN: BatchNorm statistics recomputed before validation, and the check that says so when
eval mode collapses anyway."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lvseg.batchnorm import collapse_warning, recompute, with_batch_statistics
from lvseg.cli import main as lvseg_main
from lvseg.config import ConfigError, parse_config


def test_recompute_is_the_plain_average_of_the_batches() -> None:
    model = nn.Sequential(nn.BatchNorm2d(3, momentum=0.01))
    batches = [torch.randn(4, 3, 5, 5) + shift for shift in (0.0, 2.0, 7.0)]
    model(torch.randn(4, 3, 5, 5) * 50)  # stale statistics to be replaced
    recompute(model, batches, model)
    expected = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(model[0].running_mean, expected, atol=1e-5) and model[0].momentum == 0.01


def test_batch_statistics_leave_the_running_ones_alone() -> None:
    model = nn.Sequential(nn.BatchNorm2d(3)).eval()
    before = (model[0].running_mean.clone(), model[0].running_var.clone(), model[0].num_batches_tracked.clone())
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    out = with_batch_statistics(model, model, x)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)  # normalised by its own stats
    assert all(torch.equal(a, b) for a, b in zip(before, (model[0].running_mean, model[0].running_var,
                                                           model[0].num_batches_tracked), strict=True))
    assert not model.training


def test_collapse_warning_names_the_setting() -> None:
    assert collapse_warning(0.9, 0.95, 200) is None
    assert collapse_warning(0.0, 0.1, 0) is None  # nothing meaningful to compare with
    assert "set precise_bn (e.g. 200) instead of 0" in collapse_warning(0.01, 0.9, 0)
    assert "raise precise_bn above 8" in collapse_warning(0.01, 0.9, 8)


def test_the_reference_preset_and_the_old_key() -> None:
    reference = parse_config({"recipe": "baseline", "preset": "echonet_reference"})
    assert (reference.model, reference.optimizer, reference.lr, reference.momentum, reference.weight_decay,
            reference.batch_size, reference.loss, reference.loss_reduction, reference.schedule, reference.epochs,
            reference.best_by, reference.precise_bn, reference.seed) == (
        "deeplabv3_resnet50", "sgd", 1e-5, 0.9, 0.0, 20, "bce", "sum", "constant", 50, "val_loss", 0, 0)
    assert parse_config({"recipe": "baseline", "preset": "echonet_reference", "epochs": 6}).epochs == 6
    assert parse_config({"recipe": "baseline"}).precise_bn == 200
    with pytest.raises(ConfigError, match=r"bn_refresh \(bn_refresh is now precise_bn"):
        parse_config({"recipe": "baseline", "bn_refresh": True})
    with pytest.raises(ConfigError, match="preset: 'fast' is not a preset of recipe baseline"):
        parse_config({"recipe": "baseline", "preset": "fast"})


SHORT_LRASPP = ("recipe: baseline\nmodel: lraspp_mobilenet_v3_large\noptimizer: adamw\nlr: 3.0e-3\n"
                "loss: bce_dice\nepochs: 6\n")


@pytest.mark.slow
def test_a_short_lraspp_run_is_right_by_default_and_the_reference_says_why_it_is_not(tmp_path: Path) -> None:
    """Six epochs from scratch, 40 synthetic videos (seed 11): with the running statistics training
    left (the reference) eval mode scores Dice 0; recomputed (the default) it segments."""
    assert lvseg_main(["synth", str(tmp_path / "data"), "--videos", "40", "--seed", "11"]) == 0
    results = {}
    for name, extra in (("default", ""), ("reference", "preset: echonet_reference\n")):
        (tmp_path / f"{name}.yaml").write_text(SHORT_LRASPP + extra)
        assert lvseg_main(["train", str(tmp_path / f"{name}.yaml"), "--data", str(tmp_path / "data"), "--out",
                           str(tmp_path / name), "--cache-dir", str(tmp_path / "cache")]) == 0
        results[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert results["default"]["test_dice"] >= 0.70 and not results["default"]["warnings"]
    assert results["reference"]["test_dice"] < 0.1
    assert "set precise_bn (e.g. 200) instead of 0" in results["reference"]["warnings"][0]
