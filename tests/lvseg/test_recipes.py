"""Both trainable recipes through the registries: every model, loss, optimiser, head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lvseg.config import parse_config
from lvseg.losses import LOSSES
from lvseg.models.baseline import MODELS
from lvseg.models.heads import HEADS
from lvseg.optim import OPTIMIZERS, SCHEDULES
from lvseg.recipes import RECIPES, get_recipe

FAST_BASELINE = dict(recipe="baseline", model="tiny", optimizer="adam", lr=3e-3, batch_size=6,
                     loss_reduction="mean", best_by="val_dice")
REPORTED = {"epoch", "train_loss", "val_loss", "val_dice", "val_dice_es", "val_dice_ed", "val_dice_mean",
            "ef_mae", "seconds"}


def _run(store, tmp_path: Path, **config):
    config = parse_config(config)
    reports: list[dict] = []
    return get_recipe(config.recipe)(config, store, report=reports.append, workdir=tmp_path / "run"), reports


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_baseline_model_trains_an_epoch(small_store, tmp_path: Path, model: str) -> None:
    result, reports = _run(small_store, tmp_path, **{**FAST_BASELINE, "model": model, "epochs": 1, "batch_size": 2})
    assert result.status.kind == "completed" and set(reports[0]) >= REPORTED
    assert 0 <= reports[0]["val_dice"] <= 1


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("recipe", [name for name, recipe in RECIPES.items() if recipe.trains])
def test_every_loss_trains_in_every_recipe(small_store, fast_configs: dict, tmp_path: Path, recipe: str,
                                          loss: str) -> None:
    base = {"recipe": recipe, **fast_configs[recipe]}
    result, reports = _run(small_store, tmp_path, **{**base, "loss": loss, "epochs": 2})
    assert result.status.kind == "completed" and len(reports) == 2
    declared = get_recipe(recipe).metric_keys(parse_config({**base, "loss": loss}))
    assert all(set(r) == declared for r in reports)  # what the search validates `metric:` against
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in reports)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_optimizer_and_schedule(small_store, tmp_path: Path, optimizer: str, schedule: str) -> None:
    result, reports = _run(small_store, tmp_path, recipe="dinov2_probe", image_size=112, optimizer=optimizer,
                           schedule=schedule, epochs=3, warmup_epochs=1, step_epochs=1, lr=1e-2)
    assert result.status.kind == "completed"
    assert next(r["lr"] for r in reports) == pytest.approx(1e-2 * 0.5)  # warm-up: half the rate


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("layers", [1, 4])
def test_every_probe_head_and_layer_count(small_store, tmp_path: Path, head: str, layers: int) -> None:
    result, _ = _run(small_store, tmp_path, recipe="dinov2_probe", image_size=112, head=head, layers=layers, epochs=1)
    assert result.status.kind == "completed" and result.checkpoint.is_file()


def test_the_baseline_learns_the_synthetic_lv(training_store, tmp_path: Path) -> None:
    result, reports = _run(training_store, tmp_path, **{**FAST_BASELINE, "epochs": 12})
    assert result.best["val_dice"] >= 0.8, [round(r["val_dice"], 3) for r in reports]
    assert reports[-1]["train_loss"] < reports[0]["train_loss"]


def test_same_seed_same_metrics(small_store, tmp_path: Path) -> None:
    first, _ = _run(small_store, tmp_path / "a", **{**FAST_BASELINE, "epochs": 2})
    second, _ = _run(small_store, tmp_path / "b", **{**FAST_BASELINE, "epochs": 2})
    third, _ = _run(small_store, tmp_path / "c", **{**FAST_BASELINE, "epochs": 2, "seed": 1})
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in first.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in second.history]
    assert first.history[-1]["val_loss"] != third.history[-1]["val_loss"]


def test_report_raising_stops_cleanly_and_resume_matches_an_unbroken_run(small_store, tmp_path: Path) -> None:
    config = parse_config({**FAST_BASELINE, "epochs": 3})
    recipe = get_recipe("baseline")
    unbroken = recipe(config, small_store, workdir=tmp_path / "unbroken")

    def stop_after_two(metrics: dict) -> None:
        if metrics["epoch"] == 2:
            raise RuntimeError("scheduler says stop")

    stopped = recipe(config, small_store, report=stop_after_two, workdir=tmp_path / "broken")
    assert str(stopped.status) == "stopped at epoch 2: RuntimeError: scheduler says stop"
    assert len(stopped.history) == 2 and stopped.checkpoint.is_file()
    resumed = recipe(config, small_store, workdir=tmp_path / "broken", resume=True)
    assert resumed.status.kind == "completed" and len(resumed.history) == 3
    assert resumed.history[-1]["val_loss"] == unbroken.history[-1]["val_loss"]
    assert resumed.history[-1]["val_dice"] == unbroken.history[-1]["val_dice"]


def test_resume_refuses_another_config(small_store, tmp_path: Path) -> None:
    recipe = get_recipe("baseline")
    recipe(parse_config({**FAST_BASELINE, "epochs": 1}), small_store, workdir=tmp_path)
    with pytest.raises(ValueError, match="another config .*lr"):
        recipe(parse_config({**FAST_BASELINE, "epochs": 1, "lr": 0.5}), small_store, workdir=tmp_path, resume=True)


def test_divergence_is_a_status_not_a_crash(small_store, tmp_path: Path) -> None:
    result, _reports = _run(small_store, tmp_path, **{**FAST_BASELINE, "optimizer": "sgd", "lr": 1e30,
                                                    "loss_reduction": "sum", "epochs": 3})
    assert result.status.kind == "diverged" and str(result.status).startswith("diverged at epoch")


def test_checkpoint_holds_the_resolved_config_and_loads_safely(small_store, tmp_path: Path) -> None:
    result, _ = _run(small_store, tmp_path, **{**FAST_BASELINE, "epochs": 1})
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["config"] == result.config and state["config"]["model"] == "tiny"
    assert parse_config(state["config"]) == parse_config({**FAST_BASELINE, "epochs": 1})
