"""Recipes by name. A recipe is called ``recipe(config, data, report=None, workdir=None,
resume=False) -> RunResult`` with a validated config, the frame store, and a callback that gets
one dict of metrics per epoch (raising in it stops the run cleanly).

Each recipe also offers ``recipe.predictor(config, checkpoint, data)`` for evaluation."""

from __future__ import annotations

from lvseg.recipes.base import Recipe
from lvseg.recipes.baseline import BaselineRecipe
from lvseg.recipes.probe import ProbeRecipe
from lvseg.recipes.sam_prompts import SamPromptsRecipe

RECIPES: dict[str, Recipe | SamPromptsRecipe] = {"baseline": BaselineRecipe(), "dinov2_probe": ProbeRecipe(),
                                                 "sam_prompts": SamPromptsRecipe()}


TRAINABLE = ("baseline", "dinov2_probe")


def get_recipe(name: str) -> Recipe | SamPromptsRecipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


__all__ = ["RECIPES", "TRAINABLE", "Recipe", "get_recipe"]
