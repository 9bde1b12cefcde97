"""Probe heads on frozen patch features: (B, C, h, w) -> logits (B, out, H, W) at mask size."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lvseg.registry import lookup


class Probe(nn.Module):
    """A head whose logits are upsampled bilinearly from the patch grid to the mask size."""

    def __init__(self, head: nn.Module, mask_size: tuple[int, int]) -> None:
        super().__init__()
        self.head = head
        self.mask_size = mask_size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.head(features)
        return nn.functional.interpolate(logits, size=self.mask_size, mode="bilinear", align_corners=False)


def linear(channels: int, out: int) -> nn.Module:
    """The seed report's probe: a 1x1 convolution, i.e. a linear classifier per patch."""
    return nn.Conv2d(channels, out, 1)


def bn_linear(channels: int, out: int) -> nn.Module:
    """DINOv2's own linear segmentation probe: BatchNorm, then the 1x1 convolution."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.Conv2d(channels, out, 1))


CONV_WIDTH = 128  # channels of the conv head's first block


def conv(channels: int, out: int) -> nn.Module:
    """A small decoder: two 3x3 conv blocks at patch resolution, upsampled x2 before the last."""
    width = CONV_WIDTH
    return nn.Sequential(
        nn.BatchNorm2d(channels),
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False),
        nn.Conv2d(width, width // 2, 3, padding=1), nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True),
        nn.Conv2d(width // 2, out, 1),
    )


HEADS: dict[str, Callable[[int, int], nn.Module]] = {"linear": linear, "bn_linear": bn_linear, "conv": conv}


def build_probe(head: str, *, channels: int, out: int, mask_size: tuple[int, int]) -> Probe:
    return Probe(lookup(HEADS, head, "head")(channels, out), mask_size)
