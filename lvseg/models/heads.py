"""Probe heads on frozen patch features: (B, C, h, w) -> logits (B, out, H, W) at mask size."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
from torch import nn

from lvseg import nativeops
from lvseg.models.halflinear import HALF_DTYPES, half_rows_linear
from lvseg.registry import lookup


@lru_cache(maxsize=32)
def interpolation_matrix(size_in: int, size_out: int, device: torch.device) -> torch.Tensor:
    """(size_out, size_in) float32 weights of 1-d linear interpolation, align_corners=False:
    torch's own kernel applied to the identity, so the weights are exactly those ``interpolate``
    uses."""
    identity = torch.eye(size_in, dtype=torch.float64).view(size_in, 1, size_in)
    weights = nn.functional.interpolate(identity, size=size_out, mode="linear", align_corners=False)
    return weights.view(size_in, size_out).t().contiguous().to(device, torch.float32)


def upsample_bilinear(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``interpolate(logits, size, mode="bilinear", align_corners=False)`` as two matrix products
    (bilinear interpolation is separable), in float32 even under autocast (bf16 would round a
    weight of 1/7 by 0.2%). Within 1e-6 of torch's kernel in float64, closer than its float32 kernel
    comes, and on a 2-core CPU forward and backward took 1.9 ms for 64 patch grids to 112 px
    against 5.8 ms; the native kernel (lvseg.nativeops), two taps a pixel, less again."""
    rows = interpolation_matrix(logits.shape[-2], size[0], logits.device)
    cols = interpolation_matrix(logits.shape[-1], size[1], logits.device)
    if nativeops.upsample_ready(logits, size):
        return nativeops.upsample(logits, rows, cols)
    with torch.autocast(logits.device.type, enabled=False):
        return rows @ logits.float() @ cols.t()


class Probe(nn.Module):
    """A head whose logits are upsampled bilinearly from the patch grid to the mask size."""

    def __init__(self, head: nn.Module, mask_size: tuple[int, int]) -> None:
        super().__init__()
        self.head = head
        self.mask_size = mask_size

    def forward(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        return upsample_bilinear(self.patch_logits(features, frames), self.mask_size)

    def patch_logits(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """The head's logits on the patch grid, which :meth:`forward` upsamples (a loss that takes
        them there: lvseg.losses.build_grid_loss). ``frames``: the samples' indices in
        ``features`` (a split's resident rows), for the heads that gather them themselves
        (:class:`PatchLinear`); None: ``features`` is the batch."""
        return self.head(features) if frames is None else self.head(features, frames)


class PatchLinear(nn.Conv2d):
    """A 1x1 convolution (same parameters, initialisation and checkpoints) computed as one matrix
    product over the channels: a view, with no copy, of channels-last input. On a 2-core CPU,
    for 64 base-sized frames, its backward took 4.5 ms against 10 ms for the convolution's.

    fp16 or bf16 features outside autocast (the cache's rows, on a CPU) are multiplied in float32
    a chunk at a time (:mod:`lvseg.models.halflinear`): the same values as over a float32 copy,
    which is never made. On a CPU with the native kernels (lvseg.nativeops) fp16 rows are read
    once each way where they lie, ``frames`` picking the batch's out of a split's resident rows."""

    def __init__(self, channels: int, out: int) -> None:
        super().__init__(channels, out, 1)

    def forward(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        weight = self.weight.reshape(self.out_channels, self.in_channels)
        rows = features.permute(0, 2, 3, 1)
        if nativeops.head_ready(rows):
            return nativeops.rows_linear(rows, frames, weight, self.bias).permute(0, 3, 1, 2)
        if frames is not None:
            rows = rows.index_select(0, frames)
        if features.dtype in HALF_DTYPES and not torch.is_autocast_enabled(features.device.type):
            logits = half_rows_linear(rows.reshape(-1, self.in_channels), weight, self.bias)
            return logits.view(*rows.shape[:3], self.out_channels).permute(0, 3, 1, 2)
        return nn.functional.linear(rows, weight, self.bias).permute(0, 3, 1, 2)


def linear(channels: int, out: int) -> nn.Module:
    """The seed report's probe: a 1x1 convolution, i.e. a linear classifier per patch."""
    return PatchLinear(channels, out)


def bn_linear(channels: int, out: int) -> nn.Module:
    """DINOv2's own linear segmentation probe: BatchNorm, then the 1x1 convolution."""
    return nn.Sequential(nn.BatchNorm2d(channels), PatchLinear(channels, out))


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
# heads that take the cache's fp16 rows as they are outside autocast (their first layer is a
# PatchLinear); the others start with BatchNorm, which wants float32 on a CPU
HALF_INPUT_HEADS = frozenset({"linear"})


def build_probe(head: str, *, channels: int, out: int, mask_size: tuple[int, int]) -> Probe:
    return Probe(lookup(HEADS, head, "head")(channels, out), mask_size)
