"""Recipes by name: ``RECIPES`` is the only registry (configs, metric keys, caches, caveats and
whether a recipe trains all come from its object; see :mod:`lvseg.recipes.base` for the contract).

A run is ``get_recipe(name)(config, data, report=None, workdir=None, resume=False) -> RunResult``
with a validated config (:func:`lvseg.config.parse_config`), the frame store, and a callback that
gets one dict of metrics per epoch (raising in it stops the run cleanly).
"""

from __future__ import annotations

from lvseg.recipes.base import Recipe, TrainedRecipe
from lvseg.recipes.baseline import BaselineRecipe
from lvseg.recipes.probe import ProbeRecipe
from lvseg.recipes.sam_decoder import SamDecoderRecipe
from lvseg.recipes.sam_prompts import SamPromptsRecipe
from lvseg.registry import lookup

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    BaselineRecipe(), ProbeRecipe(), SamPromptsRecipe(), SamDecoderRecipe())}


def get_recipe(name: str) -> Recipe:
    return lookup(RECIPES, name, "recipe")


__all__ = ["RECIPES", "Recipe", "TrainedRecipe", "get_recipe"]
