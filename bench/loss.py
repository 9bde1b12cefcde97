"""BCE and focal loss at mask size, forward and backward: lvseg's (lvseg.losses) against what they
were, torch's ``binary_cross_entropy_with_logits`` and torchvision's ``sigmoid_focal_loss`` (the
same formula lvseg's focal had) on the logit channel selected as lvseg did, lvseg's softplus
(through log(1 + exp(-|z|)) without torch's slow log1p) against torch's, and lvseg's two-class
cross-entropy (BCE on the log-odds z1 - z0) against torch's ``cross_entropy``, timed in turns in one
process (this machine's speed drifts between runs more than the difference).

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
from torchvision.ops import sigmoid_focal_loss

from lvseg.hostmemory import keep_freed_pages
from lvseg.losses import FOCAL_ALPHA, build_loss, softplus

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GAMMA = 2.0  # the config's default focal_gamma


def torchs_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits[:, 0], target)


def torchvisions_focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return sigmoid_focal_loss(logits[:, 0], target, alpha=FOCAL_ALPHA, gamma=GAMMA, reduction="mean")


def step_seconds(loss: Loss, logits: torch.Tensor, target: torch.Tensor) -> float:
    logits.grad = None
    started = time.perf_counter()
    loss(logits, target).backward()
    return time.perf_counter() - started


def median_ms(pair: dict[str, Loss], logits: torch.Tensor, target: torch.Tensor, rounds: int) -> dict[str, float]:
    """Each loss's median step in ms, the two timed in turns; the first tenth of the turns dropped."""
    seconds: dict[str, list[float]] = {name: [] for name in pair}
    for _ in range(rounds):
        for name, loss in pair.items():
            seconds[name].append(step_seconds(loss, logits, target))
    return {name: statistics.median(values[len(values) // 10:]) * 1e3 for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    keep_freed_pages()  # as the Trainer does on a CPU: both sides' mask-sized tensors reuse their pages
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(args.masks, 112, 112, generator=generator) > 0.7).float()
    logits = (torch.randn(args.masks, 1, 112, 112, generator=generator) * 3).requires_grad_()
    two_channels = (torch.randn(args.masks, 2, 112, 112, generator=generator) * 1.5).requires_grad_()
    pairs = {"bce": {"before": torchs_bce, "lvseg": build_loss("bce", reduction="mean", gamma=GAMMA)},
             "focal": {"before": torchvisions_focal, "lvseg": build_loss("focal", reduction="mean", gamma=GAMMA)},
             "softplus": {"before": lambda z, _: F.softplus(z).mean(), "lvseg": lambda z, _: softplus(z).mean()},
             "ce": {"before": lambda z, y: F.cross_entropy(z, y.long()),
                    "lvseg": build_loss("ce", reduction="mean", gamma=GAMMA)}}
    speed_ups = []
    for name, pair in pairs.items():
        ms = median_ms(pair, two_channels if name == "ce" else logits, target, args.rounds)
        print(f"{name} forward + backward over {args.masks} masks of 112 px, median of {args.rounds} turns each: "
              f"before {ms['before']:.2f} ms, lvseg {ms['lvseg']:.2f} ms ({torch.get_num_threads()} torch threads)")
        speed_ups.append(f"{name} {ms['before'] / ms['lvseg']:.2f}x")
    print(f"loss speed-up: {', '.join(speed_ups)}")


if __name__ == "__main__":
    main()
