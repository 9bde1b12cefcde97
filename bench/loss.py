"""BCE at mask size, forward and backward: lvseg's loss (lvseg.losses.bce) against torch's
``binary_cross_entropy_with_logits`` on the logit channel selected as lvseg did before, timed in
turns in one process (this machine's speed drifts between runs more than the difference).

A probe step's loss: 64 masks of 112 x 112 (a batch of 32 videos, two traced frames each), logits
of a head in training (random, spread ~3). Speeds only.

    .venv/bin/python bench/loss.py [--masks 64] [--rounds 400]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lvseg.losses import build_loss

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def torchs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits[:, 0], target)


def step_seconds(loss: Loss, logits: torch.Tensor, target: torch.Tensor) -> float:
    logits.grad = None
    started = time.perf_counter()
    loss(logits, target).backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(args.masks, 112, 112, generator=generator) > 0.7).float()
    logits = (torch.randn(args.masks, 1, 112, 112, generator=generator) * 3).requires_grad_()
    losses = {"torch": torchs, "lvseg": build_loss("bce", reduction="mean", gamma=2.0)}
    seconds: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(args.rounds):
        for name, loss in losses.items():
            seconds[name].append(step_seconds(loss, logits, target))
    ms = {name: statistics.median(values[len(values) // 10:]) * 1e3 for name, values in seconds.items()}
    print(f"BCE forward + backward over {args.masks} masks of 112 px, median of {args.rounds} turns each "
          f"(first tenth dropped): torch {ms['torch']:.2f} ms, lvseg {ms['lvseg']:.2f} ms "
          f"({torch.get_num_threads()} torch threads)")
    print(f"bce speed-up: {ms['torch'] / ms['lvseg']:.2f}x")


if __name__ == "__main__":
    main()
