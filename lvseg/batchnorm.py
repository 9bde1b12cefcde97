"""BatchNorm statistics that match the model being validated ("precise BN").

A BatchNorm layer normalises with its batch's statistics in training and with running averages of
them in evaluation. Those averages lag the weights: torchvision's MobileNetV3 layers update them
with momentum 0.01, so after a few epochs from scratch they still remember the random
initialisation, and a model that segments well in train mode scores Dice 0 in eval mode (seen
here: a six-epoch LR-ASPP on synthetic data, pooled Dice 0.000 in eval mode, 0.976 with batch
statistics). Over the reference's 50 epochs they settle; in a search's short trials (ASHA judges
after one or two epochs) they do not, and the scheduler would kill good configurations for a
bookkeeping reason.

Remedy (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021): before each validation, reset
the statistics and recompute them as a plain (cumulative) average over a bounded number of
training batches, without gradients. And a check that says so when eval mode collapses anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

COLLAPSE = 0.5        # eval-mode Dice below this share of the batch-statistics Dice: collapsed
MEANINGFUL = 0.2      # ... when the batch-statistics Dice itself is above this


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute(model: nn.Module, batches: Iterable[Any], forward: Callable[[Any], Any]) -> None:
    """Reset every BatchNorm's running statistics and refill them with the plain average over
    ``batches`` (each passed to ``forward`` with the model in train mode, no gradients)."""
    norms = batchnorms(model)
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average instead of an exponential one
    model.train()
    for batch in batches:
        forward(batch)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


@torch.no_grad()
def with_batch_statistics(model: nn.Module, forward: Callable[[Any], torch.Tensor], batch: Any) -> torch.Tensor:
    """``forward(batch)`` normalised with the batch's own statistics (train mode), leaving the
    running statistics exactly as they were."""
    norms = [m for m in batchnorms(model) if m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    model.train()
    try:
        return forward(batch)
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
        model.eval()


def collapse_warning(eval_dice: float, batch_dice: float, precise_bn: int) -> str | None:
    """A warning when eval-mode Dice collapsed against the batch-statistics Dice of the same frames."""
    if batch_dice <= MEANINGFUL or eval_dice >= COLLAPSE * batch_dice:
        return None
    advice = ("set precise_bn (e.g. 200) instead of 0" if precise_bn == 0
              else f"raise precise_bn above {precise_bn}")
    return (f"eval-mode validation Dice {eval_dice:.3f} is below half the Dice with batch statistics "
            f"({batch_dice:.3f}) on the same frames: the BatchNorm running statistics do not fit the weights; "
            f"{advice}")
