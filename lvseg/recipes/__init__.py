"""Recipes by name. A recipe is called ``recipe(config, data, report=None, workdir=None,
resume=False) -> RunResult`` with a validated config, the frame store, and a callback that gets
one dict of metrics per epoch (raising in it stops the run cleanly).

Each recipe also offers ``recipe.predictor(config, checkpoint, data)`` for evaluation."""

from __future__ import annotations

from lvseg.recipes.base import Recipe
from lvseg.recipes.baseline import BaselineRecipe
from lvseg.recipes.probe import ProbeRecipe

RECIPES: dict[str, Recipe] = {"baseline": BaselineRecipe(), "dinov2_probe": ProbeRecipe()}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


__all__ = ["RECIPES", "Recipe", "get_recipe"]
