"""What the benchmarks share (imported as a sibling module: run them as `python bench/NAME.py`)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from lvseg import native
from lvseg.models.heads import build_probe
from lvseg.recipes.probe import ProbeConfig
from lvseg.train import SplitData, Trainer

MASK = 112  # px: EchoNet-Dynamic's frames and traced masks


def memcpy_gb_s(nbytes: int = 1 << 29) -> float:
    """Bandwidth of one large copy in memory (read + write counted once: what a gather reads)."""
    source, target = np.ones(nbytes, np.uint8), np.empty(nbytes, np.uint8)
    np.copyto(target, source)
    started = time.perf_counter()
    for _ in range(3):
        np.copyto(target, source)
    return 3 * nbytes / (time.perf_counter() - started) / 1e9


@contextmanager
def pytorch_kernels() -> Iterator[None]:
    """Within: lvseg's CPU paths as where the native kernels cannot be built (lvseg.native), for
    inputs made and epochs run inside."""
    kept = native.library
    native.library = lambda: None
    try:
        yield
    finally:
        native.library = kept


def timed_trial(recipe, config, store, workdir: Path) -> tuple[float, float]:
    """(seconds, best val Dice) of one run of ``recipe``."""
    started = time.perf_counter()
    result = recipe(config, store, workdir=workdir)
    return time.perf_counter() - started, result.best["val_dice"]


def with_inputs(splits: dict[str, SplitData], make: Callable[[str, SplitData], Callable[[np.ndarray], object]]
                ) -> dict[str, SplitData]:
    """The same splits with ``inputs`` replaced by ``make(split, data)`` (the uncached side)."""
    return {split: SplitData(make(split, data), data.masks, data.phases, data.ef) for split, data in splits.items()}


def probe_epochs(inputs: Callable[[np.ndarray], object], frames: int, channels: int, batch: int,
                 device: torch.device, epochs: int) -> list[float]:
    """Seconds of each of ``epochs`` linear-probe epochs of the Trainer itself (lvseg.train: its
    seeded order, its gather of the masks, the recipe's default loss and optimiser, its one read of
    the device an epoch) over ``inputs``, the split's ``frames`` samples (two per video) in batches of
    ``batch`` frames. The first epoch also pays for what a trial makes once (batch slots, the
    optimiser's state, the masks' copy to the device)."""
    with probe_trainer(inputs, frames, channels, batch, device, epochs) as trainer:
        seconds = []
        for epoch in range(epochs):
            started = time.perf_counter()
            trainer.train_epoch(epoch)  # ends reading the epoch's loss: the device is done
            seconds.append(time.perf_counter() - started)
    return seconds


@contextmanager
def probe_trainer(inputs: Callable[[np.ndarray], object], frames: int, channels: int, batch: int,
                  device: torch.device, epochs: int) -> Iterator[Trainer]:
    """A Trainer of the linear probe with the recipe's defaults over ``inputs`` (``frames`` samples,
    two per video, all-background masks), in batches of ``batch`` frames, seeded."""
    torch.manual_seed(0)
    config = ProbeConfig(device=device.type, batch_size=batch // 2, epochs=epochs)
    split = SplitData(inputs, np.zeros((frames, MASK, MASK), bool), np.tile(["ES", "ED"], frames // 2),
                      np.zeros(frames // 2))
    head = build_probe("linear", channels=channels, out=1, mask_size=(MASK, MASK))
    with tempfile.TemporaryDirectory(prefix="lvseg-bench-trainer-") as workdir:
        yield Trainer(head, config, split, split, Path(workdir))
