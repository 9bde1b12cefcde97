"""The epoch loop the trainable recipes share: train, recompute BatchNorm statistics, validate,
checkpoint, report.

A recipe supplies a model and two :class:`SplitData` (how to turn sample indices into a model
input batch); everything else (optimiser, schedule, loss, metrics, best-epoch choice, checkpoints,
resume, divergence, early stop by the caller) happens here, once, for every recipe.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lvseg.batchnorm import batchnorms, collapse_warning, recompute, with_batch_statistics
from lvseg.config import TrainConfig
from lvseg.hostmemory import keep_freed_pages
from lvseg.losses import build_grid_loss, build_loss, foreground_logit
from lvseg.metrics import overlap_counts, pooled_dice, summarise, summary_keys
from lvseg.optim import build_optimizer, lr_factor
from lvseg.resident import on_device, prefetched
from lvseg.status import COMPLETED, RUNNING, Status, diverged, stopped
from lvseg.volumes import ef_absolute_errors

Report = Callable[[dict[str, Any]], None]
BEST = "best.pt"
LAST = "last.pt"
EPOCH_METRICS = frozenset({"epoch", "train_loss", "val_loss", "ef_mae", "lr", "seconds"}) | summary_keys("val_")
"""The keys of the dict :meth:`Trainer.fit` reports after every epoch."""
CHECK_BATCHES = 2  # validation batches the BatchNorm check runs with batch statistics, each epoch
log = logging.getLogger(__name__)
Inputs = torch.Tensor | tuple[torch.Tensor, ...]  # a model's input batch: one tensor, or its arguments


@dataclass(frozen=True)
class SplitData:
    """One split, two samples per video (ES at 2v, ED at 2v+1).

    ``inputs(indices)`` returns the model's input batch for those samples (a float tensor, or a
    tuple of tensors passed as the model's arguments); ``masks`` is bool (N, H, W); ``ef`` float
    (V,) FileList EF per video.
    """

    inputs: Callable[[np.ndarray], Inputs]
    masks: np.ndarray
    phases: np.ndarray
    ef: np.ndarray

    @property
    def videos(self) -> int:
        return len(self.masks) // 2

    @property
    def streamed(self) -> bool:
        """Whether ``inputs`` reads each batch from disk (lvseg.resident), rather than gathering it
        from rows already on the device."""
        return bool(getattr(self.inputs, "streamed", False))

    def batches(self, batch_size: int, order: np.ndarray | None = None):
        """Sample-index batches of ``batch_size`` videos (both frames of each), in ``order``."""
        order = np.arange(self.videos) if order is None else order
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            yield np.stack([2 * chosen, 2 * chosen + 1], axis=1).reshape(-1)


@dataclass
class RunResult:
    """What a recipe returns: how it ended (completed, diverged at epoch N or stopped at epoch N),
    the best epoch's metrics and checkpoint, every epoch's metrics, and the resolved config."""

    status: Status
    config: dict[str, Any]
    best_epoch: int | None = None
    best: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def computes_in_bf16(device: torch.device) -> bool:
    """Whether models run under bf16 autocast on ``device``: on a GPU (tensor cores), not on a CPU.
    torch's bf16 kernels are fast only on CPUs with bf16 instructions (there they saved ~2 ms of a
    ~14 ms probe step: BENCHMARKS.md), and turning bf16 on for those alone would make a trial's
    results depend on which CPU ran it."""
    return device.type == "cuda"


def autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=computes_in_bf16(device))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda requested but no CUDA device is available")
    return torch.device(name)


def is_better(metrics: dict[str, Any], best: dict[str, Any], best_by: str) -> bool:
    if not best:
        return True
    if best_by == "val_loss":
        return metrics["val_loss"] < best["val_loss"]
    return metrics["val_dice"] > best["val_dice"]


class Trainer:
    """Runs ``config.epochs`` epochs of ``model`` on ``train``, validating on ``val``.

    Checkpoints go to ``workdir``: ``last.pt`` every epoch (for resume) and ``best.pt`` when the
    chosen metric improves. Both hold the resolved config; load them with ``weights_only=True``.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, train: SplitData, val: SplitData,
                 workdir: Path, params: list[nn.Parameter] | None = None) -> None:
        self.config, self.train, self.val, self.workdir = config, train, val, Path(workdir)
        self.device = pick_device(config.device)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        else:  # each step allocates mask-sized tensors, which glibc would map afresh every time
            keep_freed_pages()
        self.loss = build_loss(config.loss, reduction=config.loss_reduction, gamma=config.focal_gamma)
        # a model whose logits are a patch grid's, upsampled (a probe), is trained on the grid's where
        # the loss can take them there: the same loss without the mask-sized logits (lvseg.losses)
        self.grid_loss = (build_grid_loss(config.loss, reduction=config.loss_reduction, gamma=config.focal_gamma)
                          if hasattr(model, "patch_logits") else None)
        self.optimizer = build_optimizer(config.optimizer, params or list(model.parameters()), lr=config.lr,
                                         weight_decay=config.weight_decay, momentum=config.momentum,
                                         nesterov=config.nesterov)
        factor = lr_factor(config.schedule, epochs=config.epochs, warmup_epochs=config.warmup_epochs,
                           step_epochs=config.step_epochs, step_gamma=config.step_gamma)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.result = RunResult(status=RUNNING, config=config.to_dict())
        self._targets: dict[int, torch.Tensor] = {}  # each split's masks on the device, by id

    # ---- one epoch -------------------------------------------------------------------------

    def _to_device(self, x: Inputs) -> Inputs:
        if isinstance(x, tuple):
            return tuple(self._to_device(t) for t in x)
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _forward(self, x: Inputs, model: Callable[..., torch.Tensor] | None = None) -> torch.Tensor:
        """``model(x)`` (the Trainer's model unless another of its methods is given), in float32."""
        x, model = self._to_device(x), model or self.model
        with autocast(self.device):
            return (model(*x) if isinstance(x, tuple) else model(x)).float()

    def _masks(self, data: SplitData, index: np.ndarray) -> torch.Tensor:
        """The batch's bool masks, gathered from the split's masks on the device (copied there once)."""
        if id(data) not in self._targets:
            self._targets[id(data)] = torch.from_numpy(np.ascontiguousarray(data.masks)).to(self.device)
        return self._targets[id(data)].index_select(0, on_device(index, self.device))

    def _target(self, data: SplitData, index: np.ndarray) -> torch.Tensor:
        return self._masks(data, index).float()

    def _loaded(self, data: SplitData, batches: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, Inputs]]:
        """(index, inputs) per batch; a streamed split's are read one batch ahead in a background
        thread, so that reading and copying overlap compute."""
        if not data.streamed:
            return ((index, data.inputs(index)) for index in batches)
        return prefetched(data.inputs, batches)

    def _batch_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._halved(self.loss(logits, target))

    def _halved(self, loss: torch.Tensor) -> torch.Tensor:
        # summed like the reference: (loss over ES frames + loss over ED frames) / 2
        return loss / 2 if self.config.loss_reduction == "sum" else loss

    def _train_loss(self, x: Inputs, index: np.ndarray) -> torch.Tensor:
        """A training batch's loss: from the patch grid's logits where there is a grid loss."""
        if self.grid_loss is None:
            return self._batch_loss(self._forward(x), self._target(self.train, index))
        grid = self._forward(x, self.model.patch_logits)
        return self._halved(self.grid_loss(grid, self._masks(self.train, index)))

    def _summed(self, loss: torch.Tensor, frames: int) -> torch.Tensor:
        """A batch loss back to the batch's total (still on the device: reading it would wait for
        the device), so that epochs report a mean loss per frame."""
        return loss.detach() * (2 if self.config.loss_reduction == "sum" else frames)

    def train_epoch(self, epoch: int) -> float:
        """One pass in a seeded order (the same whether or not the run was resumed).
        Returns the mean loss per frame, or NaN when the loss diverged.

        Nothing here waits for the device: losses add up where they are computed, and the epoch's
        total is read, and checked for divergence, once at its end (a NaN or inf in any batch makes
        the total non-finite)."""
        self.model.train()
        order = np.random.default_rng([self.config.seed, epoch]).permutation(self.train.videos)
        total, frames = torch.zeros((), device=self.device), 0
        for index, x in self._loaded(self.train, self.train.batches(self.config.batch_size, order)):
            loss = self._train_loss(x, index)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total, frames = total + self._summed(loss, len(index)), frames + len(index)
        self.scheduler.step()
        mean = total.item() / frames
        return mean if math.isfinite(mean) else math.nan

    def refresh_batchnorm(self) -> None:
        """Precise BN (:mod:`lvseg.batchnorm`): statistics from the first ``precise_bn`` train batches."""
        batches = itertools.islice(self.train.batches(self.config.batch_size), self.config.precise_bn)
        recompute(self.model, (self.train.inputs(index) for index in batches), self._forward)

    def check_batchnorm(self, predicted: np.ndarray) -> str | None:
        """A warning if the eval-mode masks of the first validation batches score below half of
        what the same weights score with batch statistics (stale running statistics)."""
        if not batchnorms(self.model):
            return None
        index = np.concatenate(list(itertools.islice(self.val.batches(self.config.batch_size), CHECK_BATCHES)))
        logits = with_batch_statistics(self.model, self._forward, self.val.inputs(index))
        masks = self.val.masks[index]
        batch_dice = pooled_dice(overlap_counts((foreground_logit(logits) > 0).cpu().numpy(), masks))
        return collapse_warning(pooled_dice(overlap_counts(predicted[index], masks)), batch_dice,
                                self.config.precise_bn)

    @torch.no_grad()
    def predict(self, data: SplitData) -> tuple[np.ndarray, float]:
        """Bool (N, H, W) predicted masks (LV logit > 0) and the mean loss per frame."""
        self.model.eval()
        masks, total = [], torch.zeros((), device=self.device)
        for index, x in self._loaded(data, data.batches(self.config.batch_size)):
            logits = self._forward(x)
            total += self._summed(self._batch_loss(logits, self._target(data, index)), len(index))
            masks.append(foreground_logit(logits) > 0)
        return torch.cat(masks).cpu().numpy(), total.item() / len(data.masks)

    def evaluate(self, data: SplitData, prefix: str = "val_") -> tuple[dict[str, float], np.ndarray]:
        """Loss, pooled/per-phase/mean Dice and EF error on a split, plus the predicted masks."""
        predicted, loss = self.predict(data)
        metrics = {f"{prefix}loss": loss, **summarise(overlap_counts(predicted, data.masks), data.phases, prefix)}
        errors = ef_absolute_errors(predicted[0::2], predicted[1::2], data.ef)
        metrics[f"{prefix}ef_mae"] = float(np.nanmean(errors)) if np.isfinite(errors).any() else math.nan
        return metrics, predicted

    # ---- the run ---------------------------------------------------------------------------

    def fit(self, report: Report | None = None, resume: bool = False) -> RunResult:
        self.workdir.mkdir(parents=True, exist_ok=True)
        start = self._resume() if resume else 0
        for epoch in range(start, self.config.epochs):
            started, lr = time.perf_counter(), self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch(epoch)
            if math.isnan(train_loss):
                self.result.status = diverged(epoch + 1, f"non-finite {self.config.loss} loss")
                return self.result
            if self.config.precise_bn:
                self.refresh_batchnorm()
            metrics, predicted = self.evaluate(self.val)
            self._warn(self.check_batchnorm(predicted) if not self.result.warnings else None, epoch + 1)
            metrics["ef_mae"] = metrics.pop("val_ef_mae")  # the report contract's name
            metrics = {"epoch": epoch + 1, "train_loss": train_loss, **metrics,
                       "lr": lr, "seconds": time.perf_counter() - started}
            self._record(metrics)
            if not self._report(report, metrics):
                return self.result
        self.result.status = COMPLETED
        return self.result

    def _warn(self, warning: str | None, epoch: int) -> None:
        if warning:
            self.result.warnings.append(f"epoch {epoch}: {warning}")
            log.warning("epoch %d: %s", epoch, warning)

    def _record(self, metrics: dict[str, Any]) -> None:
        self.result.history.append(metrics)
        if is_better(metrics, self.result.best, self.config.best_by):
            self.result.best, self.result.best_epoch = metrics, metrics["epoch"]
            self.result.checkpoint = self.workdir / BEST
            torch.save({"model": self.model.state_dict(), "config": self.result.config,
                        "epoch": metrics["epoch"], "metrics": metrics}, self.result.checkpoint)
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "config": self.result.config,
                    "history": self.result.history, "best_epoch": self.result.best_epoch},
                   self.workdir / LAST)

    def _report(self, report: Report | None, metrics: dict[str, Any]) -> bool:
        """Hand the epoch's metrics to the caller; an exception there stops the run cleanly."""
        if report is None:
            return True
        try:
            report(dict(metrics))
        except Exception as error:  # the caller's way to stop us (e.g. a scheduler): not our bug
            self.result.status = stopped(metrics["epoch"], f"{type(error).__name__}: {error}")
            return False
        return True

    def _resume(self) -> int:
        """Continue from ``last.pt`` if the workdir has one for this same config; returns the
        next epoch (0-based)."""
        path = self.workdir / LAST
        if not path.is_file():
            return 0
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["config"] != self.result.config:
            changed = sorted(k for k in self.result.config if state["config"].get(k) != self.result.config[k])
            raise ValueError(f"{path} was written by another config (differs in {', '.join(changed)})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.result.history = list(state["history"])
        self.result.best_epoch = state["best_epoch"]
        if self.result.best_epoch is not None:
            self.result.best = self.result.history[self.result.best_epoch - 1]
            self.result.checkpoint = self.workdir / BEST
        return len(self.result.history)
