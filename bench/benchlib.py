"""What the benchmarks share (imported as a sibling module: run them as `python bench/NAME.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lvseg.train import SplitData


def timed_trial(recipe, config, store, workdir: Path) -> tuple[float, float]:
    """(seconds, best val Dice) of one run of ``recipe``."""
    started = time.perf_counter()
    result = recipe(config, store, workdir=workdir)
    return time.perf_counter() - started, result.best["val_dice"]


def with_inputs(splits: dict[str, SplitData], make: Callable[[str, SplitData], Callable[[np.ndarray], object]]
                ) -> dict[str, SplitData]:
    """The same splits with ``inputs`` replaced by ``make(split, data)`` (the uncached side)."""
    return {split: SplitData(make(split, data), data.masks, data.phases, data.ef) for split, data in splits.items()}
