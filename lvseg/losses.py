"""Segmentation losses by name. Each takes logits (B, C, H, W) with C = ``channels(name)`` and a
float target (B, H, W) in {0, 1}, and a reduction: "mean" (per pixel, or per image for Dice) or
"sum" (the EchoNet reference's, whose learning rate 1e-5 is tuned for summed BCE)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

Loss = Callable[..., torch.Tensor]
REDUCTIONS = ("mean", "sum")
SMOOTH = 1.0  # Dice smoothing, in pixels: keeps empty masks finite


def foreground_logit(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 2, H, W) logits -> (B, H, W) logit of the LV: >0 means LV. For two channels
    (softmax), log p(LV) - log p(background) = z1 - z0."""
    return logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return values.sum() if reduction == "sum" else values.mean()


def bce(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits[:, 0], target, reduction=reduction)


def ce(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Two-class softmax cross-entropy, as in the DINOv2 segmentation tutorial the seed followed."""
    return F.cross_entropy(logits, target.long(), reduction=reduction)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """1 - soft Dice per image, on sigmoid (or softmax) probabilities."""
    probability = torch.sigmoid(foreground_logit(logits))
    overlap = (probability * target).sum((1, 2))
    total = probability.sum((1, 2)) + target.sum((1, 2))
    return _reduce(1 - (2 * overlap + SMOOTH) / (total + SMOOTH), reduction)


def bce_dice(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return bce(logits, target, reduction) + soft_dice(logits, target, reduction)


def focal(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean", gamma: float = 2.0) -> torch.Tensor:
    return sigmoid_focal_loss(logits[:, 0], target, alpha=0.25, gamma=gamma, reduction=reduction)


LOSSES: dict[str, Loss] = {"bce": bce, "ce": ce, "dice": soft_dice, "bce_dice": bce_dice, "focal": focal}


def channels(name: str) -> int:
    """Output channels a model needs for this loss: 2 for softmax cross-entropy, else 1."""
    return 2 if name == "ce" else 1


def build_loss(name: str, reduction: str = "mean", focal_gamma: float = 2.0) -> Callable:
    """``loss(logits, target) -> scalar`` for a registered name."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown loss reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
    function = LOSSES[name]
    if name == "focal":
        return lambda logits, target: focal(logits, target, reduction, focal_gamma)
    return lambda logits, target: function(logits, target, reduction)
