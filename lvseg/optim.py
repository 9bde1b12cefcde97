"""Optimisers and learning-rate schedules by name: one ``name -> builder`` dict each.

Builders take keyword-only arguments and define no defaults: every default lives in the config
(lvseg.config). Schedules step once per epoch, so that a run resumed from a checkpoint follows the
same rate curve as one that never stopped.

The optimisers are torch.optim's own classes and arithmetic, minus one import: torch wraps an
optimizer's ``step``, ``zero_grad``, ``add_param_group`` and ``state_dict``/``load_state_dict`` in
guards for torch.compile that import ``torch._dynamo`` (with sympy) on their first call: ~2.4 s of
one core in every new trial worker, on the path to a search's first trial (BENCHMARKS.md, point 6
of issue 9). Nothing here runs under torch.compile, so :func:`eager` calls the methods those guards
wrap. Where a future torch no longer exposes them (``__wrapped__``), the guarded methods stay: the
same results, only the import comes back, and tests/lvseg/test_optim.py says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from lvseg.registry import lookup

Params = Iterable[torch.nn.Parameter]


def _unguarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """The function torch's dynamo guard wraps (functools.wraps keeps it), else ``method``."""
    return getattr(method, "__wrapped__", method)


def eager(optimizer: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """A subclass of a torch.optim optimizer that never imports ``torch._dynamo``: the same
    updates, state dicts and schedulers (it is still a ``torch.optim.Optimizer``)."""
    step = _unguarded(optimizer.step)

    def unguarded_step(self: torch.optim.Optimizer, closure: Callable[[], float] | None = None) -> float | None:
        with torch.set_grad_enabled(self.defaults["differentiable"]):  # as torch's guard sets it
            return step(self, closure)

    methods = {name: _unguarded(getattr(optimizer, name))
               for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict")}
    return type(optimizer.__name__, (optimizer,), {**methods, "step": unguarded_step, "__module__": __name__})


SGD, Adam, AdamW = eager(torch.optim.SGD), eager(torch.optim.Adam), eager(torch.optim.AdamW)


def sgd(params: Params, *, lr: float, weight_decay: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    return SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def adam(params: Params, *, lr: float, weight_decay: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    """``momentum`` and ``nesterov`` are SGD's: ignored."""
    return Adam(params, lr=lr, weight_decay=weight_decay)


def adamw(params: Params, *, lr: float, weight_decay: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    """``momentum`` and ``nesterov`` are SGD's: ignored."""
    return AdamW(params, lr=lr, weight_decay=weight_decay)


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
