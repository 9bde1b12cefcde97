"""What the trainable recipes share: seeding, work folders, and turning a checkpoint back into
a Trainer for evaluation."""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import nn

from lvseg.config import TrainConfig
from lvseg.framestore import FrameStore
from lvseg.report import overlay
from lvseg.train import BEST, EPOCH_METRICS, Report, RunResult, SplitData, Trainer


class Recipe(ABC):
    """A trainable recipe: it knows how to build its model and its inputs; the Trainer does the rest."""

    @abstractmethod
    def build(self, config: TrainConfig, data: FrameStore) -> tuple[nn.Module, dict[str, SplitData]]:
        """The freshly initialised trainable model and the SplitData of train, val and test."""

    def metric_keys(self, config: TrainConfig) -> frozenset[str]:
        """The keys of every metrics dict this recipe reports for ``config``."""
        return EPOCH_METRICS

    def trainable(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def __call__(self, config: TrainConfig, data: FrameStore, report: Report | None = None,
                 workdir: str | Path | None = None, resume: bool = False) -> RunResult:
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)  # same seed, same data -> same initial weights and metrics
        model, splits = self.build(config, data)
        workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"lvseg-{config.recipe}-"))
        trainer = Trainer(model, config, splits["train"], splits["val"], workdir, self.trainable(model))
        return trainer.fit(report, resume=resume)

    def artifacts(self, config: TrainConfig, store: FrameStore, workdir: Path, title: str) -> list[Path]:
        """Pictures of a finished run for trackers: validation overlay of the best epoch."""
        trainer, splits = self.trainer_from_checkpoint(config, workdir / BEST, store)
        _, predicted = trainer.evaluate(splits["val"])
        frames = store.frames("val")
        overlay(frames.images, predicted, frames.masks, frames.videos, workdir / "overlay.png", title)
        return [workdir / "overlay.png"]

    def trainer_from_checkpoint(self, config: TrainConfig, checkpoint: str | Path,
                                data: FrameStore) -> tuple[Trainer, dict[str, SplitData]]:
        """A Trainer holding the checkpoint's weights, for evaluation on any split."""
        model, splits = self.build(config, data)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        trainer = Trainer(model, config, splits["train"], splits["val"], Path(checkpoint).parent,
                          self.trainable(model))
        return trainer, splits
