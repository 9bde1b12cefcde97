"""``lvseg train CONFIG.yaml``: train from a config file (the format the search exports), then
evaluate the best epoch on val and test and write the reports."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lvseg.config import RecipeConfig
from lvseg.framestore import FrameStore, load_store
from lvseg.recipes import get_recipe
from lvseg.report import overlay, split_report, write_metrics

SHOWN = ("epoch", "train_loss", "val_loss", "val_dice", "val_dice_es", "val_dice_ed", "ef_mae", "seconds")


def print_epoch(metrics: dict[str, Any]) -> None:
    """One line per epoch: the usual figures, in this order, where the recipe reports them."""
    shown = [k for k in SHOWN if k in metrics] + sorted(k for k in metrics if k.startswith("zero_shot"))
    print("  ".join(f"{k} {metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k} {metrics[k]}"
                    for k in shown), flush=True)


def train_from_config(config: RecipeConfig, data: str | Path | None, out: str | Path,
                      cache_dir: str | Path | None = None, allow_missing: bool = False) -> dict[str, Any]:
    """Run the recipe (train, for a recipe that trains), evaluate its best state on val and test,
    write the reports to ``out``; returns the metrics written."""
    root = data or config.data
    if root is None:
        raise ValueError("no data folder: pass --data ROOT or set `data:` in the config")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    store = load_store(root, cache_dir, allow_missing)
    recipe = get_recipe(config.recipe)
    notes = recipe.caveats(config, store)
    for note in notes:
        print(f"NOTE: {note} - these numbers are not a result.")
    result = recipe(config, store, report=print_epoch, workdir=out)
    pd.DataFrame(result.history).to_csv(out / "history.csv", index=False)
    metrics: dict[str, Any] = {"status": str(result.status), "best_epoch": result.best_epoch, "caveats": notes,
                               "warnings": result.warnings}
    if result.checkpoint is not None or not recipe.trains:
        metrics.update(evaluate_best(config, result.checkpoint, store, out, notes))
    write_metrics(out / "metrics.json", metrics)
    return metrics


def evaluate_best(config: RecipeConfig, checkpoint: Path | None, store: FrameStore, out: Path,
                  notes: list[str]) -> dict[str, float]:
    """Metrics, per-video Dice, histograms and the test overlay of the run's best state on val and test."""
    recipe = get_recipe(config.recipe)
    title = f"{config.recipe} ({'; '.join(notes) or 'EchoNet-Dynamic'})"
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        frames = store.frames(split)
        if len(frames) == 0:
            metrics[f"{split}_dice"] = math.nan
            continue
        split_metrics, predicted = recipe.evaluate(config, checkpoint, store, split)
        metrics.update(split_report(split, split_metrics, predicted, frames.masks, frames.phases,
                                    frames.videos, out, title))
        if split == "test":
            overlay(frames.images, predicted, frames.masks, frames.videos, out / "overlay.png", title)
    return metrics
