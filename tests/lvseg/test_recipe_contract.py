"""The recipe contract (lvseg/recipes/base.py), tested once for every registered recipe, end to end on
synthetic data: a new recipe is tested by adding its fast config to tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lvseg.config import parse_config
from lvseg.recipes import RECIPES, get_recipe
from lvseg.recipes.base import SYNTHETIC
from lvseg.train import LAST


def test_every_recipe_has_a_fast_config(fast_configs: dict) -> None:
    assert set(fast_configs) == set(RECIPES)


@pytest.fixture
def config_of(fast_configs: dict):
    return lambda name: parse_config({"recipe": name, **fast_configs[name]})


@pytest.fixture(params=sorted(RECIPES))
def name(request) -> str:
    return request.param


def test_a_run_reports_every_epoch_with_the_declared_keys_and_writes_its_artifacts(name: str, config_of, small_store,
                                                                                   tmp_path: Path) -> None:
    recipe, config = get_recipe(name), config_of(name)
    reports: list[dict] = []
    result = recipe(config, small_store, report=reports.append, workdir=tmp_path)
    assert result.status.kind == "completed"
    assert [r["epoch"] for r in reports] == list(range(1, recipe.epochs(config) + 1))
    assert all(set(r) == recipe.metric_keys(config) for r in reports)
    assert all(0 <= v <= 1 for r in reports for k, v in r.items() if k.endswith("_dice"))
    files = recipe.artifacts(config, small_store, tmp_path, "contract test")
    pictures = [f for f in files if f.suffix == ".png"]
    assert pictures and all(p.read_bytes()[:4] == b"\x89PNG" for p in pictures)
    table = next(f for f in files if f.name == "per_video.csv").read_text().splitlines()
    assert table[0].startswith("video") and len(table) > 1


def test_raising_in_report_stops_the_run_cleanly(name: str, config_of, small_store, tmp_path: Path) -> None:
    def stop(metrics: dict) -> None:
        raise RuntimeError("enough")

    result = get_recipe(name)(config_of(name), small_store, report=stop, workdir=tmp_path)
    assert str(result.status) == "stopped at epoch 1: RuntimeError: enough" and len(result.history) == 1


@pytest.mark.parametrize("trained", sorted(n for n, r in RECIPES.items() if r.trains))
def test_a_trained_run_resumes_to_the_numbers_of_an_unbroken_one(trained: str, config_of, small_store,
                                                                 tmp_path: Path) -> None:
    recipe, config = get_recipe(trained), config_of(trained)
    unbroken = recipe(config, small_store, workdir=tmp_path / "unbroken")

    def stop_after_one(metrics: dict) -> None:
        if metrics["epoch"] == 1:
            raise RuntimeError("interrupted")

    recipe(config, small_store, report=stop_after_one, workdir=tmp_path / "broken")
    assert (tmp_path / "broken" / LAST).is_file()
    resumed = recipe(config, small_store, workdir=tmp_path / "broken", resume=True)
    assert resumed.status.kind == "completed" and len(resumed.history) == recipe.epochs(config)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in unbroken.history]


def test_evaluate_gives_split_metrics_and_masks(name: str, config_of, small_store, tmp_path: Path) -> None:
    recipe, config = get_recipe(name), config_of(name)
    result = recipe(config, small_store, workdir=tmp_path)
    metrics, predicted = recipe.evaluate(config, result.checkpoint, small_store, "test")
    masks = small_store.frames("test").masks
    assert predicted.shape == masks.shape and predicted.dtype == np.bool_
    assert 0 <= metrics["test_dice"] <= 1 and all(k.startswith("test_") for k in metrics)


def test_caches_and_caveats(name: str, config_of, small_store) -> None:
    recipe, config = get_recipe(name), config_of(name)
    assert SYNTHETIC in recipe.caveats(config, small_store)
    for cache in recipe.caches(config, small_store):
        assert cache.nbytes == int(np.prod(cache.shape)) * 2 * 2 * len(small_store)
        assert cache.load(progress=False).shape == (len(small_store), 2, *cache.shape) and cache.built
    assert set(recipe.cache_keys) <= set(config.to_dict())


def test_every_default_parses_and_every_preset_is_a_valid_config(name: str) -> None:
    recipe = get_recipe(name)
    assert parse_config({"recipe": name}) == recipe.config()
    for preset in recipe.presets:
        assert parse_config({"recipe": name, "preset": preset}).preset == preset
