"""Optimisers and learning-rate schedules by name. Schedules step once per epoch, so that a run
resumed from a checkpoint follows the same rate curve as one that never stopped."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0,
    momentum: float = 0.9, nesterov: bool = False,
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def lr_factor(name: str, epochs: int, warmup_epochs: int = 0, step_epochs: int = 10,
              step_gamma: float = 0.1) -> Callable[[int], float]:
    """Multiplier of the base rate for epoch e (0-based): linear warm-up, then the schedule."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        if name == "cosine":
            progress = (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
            return 0.5 * (1 + math.cos(math.pi * progress))
        if name == "step":
            return step_gamma ** ((epoch - warmup_epochs) // step_epochs)
        return 1.0

    return factor
