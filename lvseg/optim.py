"""Optimisers and learning-rate schedules by name: one ``name -> builder`` dict each.

Builders take keyword-only arguments and define no defaults: every default lives in the config
(lvseg.config). Schedules step once per epoch, so that a run resumed from a checkpoint follows the
same rate curve as one that never stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from lvseg.registry import lookup

Params = Iterable[torch.nn.Parameter]


def sgd(params: Params, *, lr: float, weight_decay: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def adam(params: Params, *, lr: float, weight_decay: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    """``momentum`` and ``nesterov`` are SGD's: ignored."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def adamw(params: Params, *, lr: float, weight_decay: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    """``momentum`` and ``nesterov`` are SGD's: ignored."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"sgd": sgd, "adam": adam, "adamw": adamw}


def build_optimizer(name: str, params: Params, *, lr: float, weight_decay: float, momentum: float,
                    nesterov: bool) -> torch.optim.Optimizer:
    return lookup(OPTIMIZERS, name, "optimizer")(params, lr=lr, weight_decay=weight_decay, momentum=momentum,
                                                 nesterov=nesterov)


# Each schedule: the rate's multiplier ``epoch`` epochs after warm-up, of ``span`` such epochs.

def constant(epoch: int, *, span: int, step_epochs: int, step_gamma: float) -> float:
    return 1.0


def cosine(epoch: int, *, span: int, step_epochs: int, step_gamma: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * epoch / max(1, span)))


def step(epoch: int, *, span: int, step_epochs: int, step_gamma: float) -> float:
    return step_gamma ** (epoch // step_epochs)


SCHEDULES: dict[str, Callable[..., float]] = {"constant": constant, "cosine": cosine, "step": step}


def lr_factor(name: str, *, epochs: int, warmup_epochs: int, step_epochs: int,
              step_gamma: float) -> Callable[[int], float]:
    """Multiplier of the base rate for epoch e (0-based): linear warm-up, then the schedule."""
    schedule = lookup(SCHEDULES, name, "schedule")

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        return schedule(epoch - warmup_epochs, span=epochs - warmup_epochs, step_epochs=step_epochs,
                        step_gamma=step_gamma)

    return factor
