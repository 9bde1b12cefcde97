"""The recipe contract: everything the rest of the system knows about a recipe comes from here.

A recipe is one object in one module, ``lvseg/recipes/<name>.py``, registered in
``lvseg.recipes.RECIPES``. It defines:

- ``name`` and ``config``: its registered name and its config dataclass (where its defaults live);
- ``presets``: named groups of config values (``preset: NAME`` in a config), maybe none;
- ``trains``: whether a run trains (checkpoints, resume, a best epoch) or only evaluates;
- ``metric_keys(config)``: the keys of every metrics dict a run reports (a search's `metric:` must
  be one of them);
- ``epochs(config)``: how many reports a run makes (the schedulers count time in them);
- ``cache_keys`` and ``caches(config, data)``: which config keys decide the frame caches it reads,
  and those caches (a search builds them before any trial without knowing recipe names, and
  refuses one that does not fit on disk);
- ``caveats(config, data)``: what makes its numbers not a result (synthetic data, random weights);
- ``report_metrics``: reported figures of its own that a search report plots per choice (maybe none);
- ``run(config, data, report, workdir, resume)``: the run (``recipe(...)`` calls it);
- ``artifacts(config, data, workdir, title)``: pictures of a finished run, for trackers;
- ``evaluate(config, checkpoint, data, split)``: metrics and predicted masks on a split, from a
  finished run's best checkpoint (or, for a recipe that does not train, from the config alone).

``report`` gets one dict of metrics per epoch; an exception it raises stops the run cleanly, with
status ``stopped at epoch N``.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lvseg.config import RecipeConfig, TrainConfig
from lvseg.framecache import FrameCache
from lvseg.framestore import FrameSet, FrameStore
from lvseg.metrics import overlap_counts, per_video_dice
from lvseg.report import overlay
from lvseg.train import BEST, EPOCH_METRICS, Report, RunResult, SplitData, Trainer

SYNTHETIC = "SYNTHETIC data (lvseg synth): cartoons, not echocardiograms"
SPLITS = ("train", "val", "test")
PER_VIDEO = "per_video.csv"  # artifact: per-video Dice and counts of the split a run is judged on


def write_per_video(frames: FrameSet, predicted: np.ndarray, folder: Path) -> Path:
    """The per-video table (:func:`lvseg.metrics.per_video_dice`) of ``predicted`` on ``frames``:
    what paired comparisons of runs and per-video plots are computed from."""
    path = folder / PER_VIDEO
    per_video_dice(frames.videos, frames.phases, overlap_counts(predicted, frames.masks)).to_csv(path, index=False)
    return path


class Recipe(ABC):
    name: ClassVar[str]
    config: ClassVar[type[RecipeConfig]]
    trains: ClassVar[bool]
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    cache_keys: ClassVar[tuple[str, ...]] = ()
    report_metrics: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def metric_keys(self, config: Any) -> frozenset[str]:
        """The keys of every metrics dict a run of ``config`` reports."""

    def epochs(self, config: Any) -> int:
        """How many times a run reports (once for a recipe that does not train)."""
        return 1

    def caches(self, config: Any, data: FrameStore) -> list[FrameCache]:
        """The frame caches a run of ``config`` reads (none by default)."""
        return []

    def caveats(self, config: Any, data: FrameStore) -> list[str]:
        """Plain statements of what makes this run's numbers not a result, if anything."""
        return [SYNTHETIC] if data.info.get("synthetic") else []

    @abstractmethod
    def run(self, config: Any, data: FrameStore, report: Report | None = None, workdir: str | Path | None = None,
            resume: bool = False) -> RunResult:
        """Run ``config`` on ``data``; ``report`` gets each epoch's metrics."""

    def __call__(self, config: Any, data: FrameStore, report: Report | None = None,
                 workdir: str | Path | None = None, resume: bool = False) -> RunResult:
        return self.run(config, data, report, workdir, resume)

    @abstractmethod
    def artifacts(self, config: Any, data: FrameStore, workdir: Path, title: str) -> list[Path]:
        """Pictures of the finished run in ``workdir``, for trackers."""

    @abstractmethod
    def evaluate(self, config: Any, checkpoint: Path | None, data: FrameStore,
                 split: str) -> tuple[dict[str, float], np.ndarray]:
        """Metrics (prefixed ``<split>_``) and bool (N, H, W) predicted masks on ``split``."""


def workdir_for(config: RecipeConfig, workdir: str | Path | None) -> Path:
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"lvseg-{config.recipe}-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class TrainedRecipe(Recipe):
    """A recipe that trains a model with the shared epoch loop (:class:`lvseg.train.Trainer`): it
    knows how to build its model and its inputs, the Trainer does the rest."""

    trains = True

    @abstractmethod
    def build(self, config: Any, data: FrameStore) -> tuple[nn.Module, dict[str, SplitData]]:
        """The freshly initialised model and the SplitData of train, val and test."""

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def metric_keys(self, config: TrainConfig) -> frozenset[str]:
        return EPOCH_METRICS

    def epochs(self, config: TrainConfig) -> int:
        return config.epochs

    def run(self, config: TrainConfig, data: FrameStore, report: Report | None = None,
            workdir: str | Path | None = None, resume: bool = False) -> RunResult:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        for cache in self.caches(config, data):  # built before seeding: building one draws random numbers
            cache.load()
        torch.manual_seed(config.seed)  # same seed, same data -> same initial weights and metrics
        model, splits = self.build(config, data)
        trainer = Trainer(model, config, splits["train"], splits["val"], workdir_for(config, workdir),
                          self.trainable(model))
        return trainer.fit(self.reporting(trainer, splits, report), resume=resume)

    def reporting(self, trainer: Trainer, splits: dict[str, SplitData], report: Report | None) -> Report | None:
        """The callback each epoch reports to: ``report`` itself, unless the recipe adds figures."""
        return report

    def artifacts(self, config: TrainConfig, data: FrameStore, workdir: Path, title: str) -> list[Path]:
        """Validation overlay and per-video table of the best epoch."""
        _, predicted = self.evaluate(config, workdir / BEST, data, "val")
        frames = data.frames("val")
        overlay(frames.images, predicted, frames.masks, frames.videos, workdir / "overlay.png", title)
        return [workdir / "overlay.png", write_per_video(frames, predicted, workdir)]

    def evaluate(self, config: TrainConfig, checkpoint: Path | None, data: FrameStore,
                 split: str) -> tuple[dict[str, float], np.ndarray]:
        if checkpoint is None:
            raise ValueError(f"recipe {self.name} evaluates a trained checkpoint (best.pt); none was given")
        trainer, splits = self.trainer_from_checkpoint(config, checkpoint, data)
        return trainer.evaluate(splits[split], prefix=f"{split}_")

    def trainer_from_checkpoint(self, config: TrainConfig, checkpoint: str | Path,
                                data: FrameStore) -> tuple[Trainer, dict[str, SplitData]]:
        """A Trainer holding the checkpoint's weights, for evaluation on any split."""
        model, splits = self.build(config, data)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        trainer = Trainer(model, config, splits["train"], splits["val"], Path(checkpoint).parent,
                          self.trainable(model))
        return trainer, splits


def split_data(data: FrameStore, split: str, inputs_for) -> SplitData:
    """A split's SplitData; ``inputs_for(rows)`` makes its input function from the split's rows
    of the store's flattened (video, phase) samples. The split's images are not read here: the
    input function reads what it needs, once (lvseg.resident)."""
    videos = data.video_indices(split)
    height, width = data.masks.shape[2:4]
    table = data.table.iloc[videos]
    return SplitData(inputs=inputs_for(sample_rows(videos)),
                     masks=np.asarray(data.masks[videos]).reshape(-1, height, width),
                     phases=np.tile(np.array(["ES", "ED"]), len(videos)), ef=table["ef"].to_numpy(dtype=np.float64))


def sample_rows(videos: np.ndarray) -> np.ndarray:
    """Rows of a (V * 2, ...) flattened store array holding these videos' ES and ED samples."""
    return np.stack([2 * videos, 2 * videos + 1], axis=1).reshape(-1)
