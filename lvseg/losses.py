"""Segmentation losses by name: ``LOSSES`` maps each to its function and the output channels it
needs. Every function takes logits (B, C, H, W), a float target (B, H, W) in {0, 1}, and the same
keywords: ``reduction`` ("mean": per pixel, or per image for Dice; "sum": the EchoNet reference's,
whose learning rate 1e-5 is tuned for summed BCE) and ``gamma`` (focal's focusing power; the others
ignore it). No defaults here: the config holds them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from lvseg import nativeops
from lvseg.models.heads import interpolation_matrix, upsample_bilinear
from lvseg.registry import lookup

REDUCTIONS = ("mean", "sum")
SMOOTH = 1.0        # Dice smoothing, in pixels: keeps empty masks finite
FOCAL_ALPHA = 0.25  # focal loss's weight of the foreground class (Lin et al., 2017)


def foreground_logit(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1 or 2, H, W) logits -> (B, H, W) logit of the LV: >0 means LV. For two channels
    (softmax), log p(LV) - log p(background) = z1 - z0."""
    # squeeze, not logits[:, 0]: a view, whose backward is another (selecting's wrote a zero tensor of
    # the logits' size, then the gradient into it: ~0.7 ms of a 64-mask probe step on a 2-core CPU)
    return logits.squeeze(1) if logits.shape[1] == 1 else _LogOdds.apply(logits)


class _LogOdds(torch.autograd.Function):
    """z1 - z0 of two-channel logits, whose gradient is (-g, g) in one pass: autograd's, through
    two selections and a difference, wrote two zero tensors of the logits' size, the gradient into
    each, then added them."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, 1] - logits[:, 0]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.stack((grad.neg(), grad), 1)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return values.sum() if reduction == "sum" else values.mean()


def _sum_scale(target: torch.Tensor, reduction: str) -> float:
    """What a loss summed over the pixels is multiplied by for ``reduction`` (1, or 1/pixels for a
    mean): the losses computed as one sum scale it once."""
    return 1.0 if reduction == "sum" else 1.0 / max(target.numel(), 1)


def log1p_exp_neg(magnitude: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(-m)) for m >= 0, i.e. softplus(-m), to float32's precision (within 1.2 ulp of
    float64's log1p over (0, 1], denormals included) without torch's ``log1p``: its float kernel
    is SLEEF's u10 log1p (double-float arithmetic), 3.4-3.7 ms for 64 masks of 112 px on a 2-core
    CPU against 0.7 ms for this (BENCHMARKS.md, "Without torch's log1p, freed pages kept").

    log1p(x) from a plain log: u = fl(1 + x) rounds x by u - 1 - x (computed exactly), and
    log(1 + x) = log(u) - (u - 1 - x) / u to first order in that rounding, which is under half an
    ulp of u; where x is too small to change u, this is x itself. On a GPU torch's ``log1p`` is one
    fast kernel, where these would be four more launches a step: it is used there."""
    small = magnitude.neg().exp_()
    if small.device.type != "cpu":
        return small.log1p_()
    whole = small + 1
    rounding = (whole - 1).sub_(small).div_(whole)
    return whole.log_().sub_(rounding)


def _softplus_values(x: torch.Tensor) -> torch.Tensor:
    """softplus(x) = relu(x) + log1p(exp(-|x|)), without a graph."""
    return log1p_exp_neg(x.abs()).add_(torch.relu(x))


class _Softplus(torch.autograd.Function):
    """softplus(x) = relu(x) + log1p(exp(-|x|)) through :func:`log1p_exp_neg` (torch's
    ``softplus`` uses the same slow log1p: ~7 ms for 64 masks of 112 px on a 2-core CPU); its
    gradient is sigmoid(x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _softplus_values(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.sigmoid(x).mul_(grad)


def softplus(x: torch.Tensor) -> torch.Tensor:
    return _Softplus.apply(x)


class _LogitBCE(torch.autograd.Function):
    """``binary_cross_entropy_with_logits(z, y, reduction="sum") * scale`` in fewer passes over
    the pixels: each pixel's relu(z) - z.y + log1p(exp(-|z|)), whole (a sum of softplus(z) minus
    a sum of z.y would lose digits to cancellation once a head is confident), and the gradient
    (sigmoid(z) - y) * scale. torch's forward goes through log_sigmoid, which took ~2 ms of an
    ~11 ms probe step (64 masks of 112 px) on a 2-core CPU (BENCHMARKS.md). In float32 the value is
    within 1e-7 of float64's for a confident head too, where torch's kernel was 1e-4 off."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        y = y.to(z.dtype)
        ctx.save_for_backward(z, y)
        ctx.scale = scale
        if nativeops.bce_ready(z):  # one pass, summed in float64
            return torch.tensor(nativeops.bce_sum(z, y) * scale, dtype=z.dtype)
        # relu(z) - z.y first: exactly 0 where a confident head is right, so that adding the log1p
        # term rounds once (added to relu(z) first, it would lose the term's digits to z's)
        loss = torch.relu(z).addcmul_(z, y, value=-1)
        return loss.add_(log1p_exp_neg(z.abs())).sum() * scale

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        z, y = ctx.saved_tensors
        if nativeops.bce_ready(z):
            return nativeops.bce_grad(z, y, float(grad) * ctx.scale), None, None
        return torch.sigmoid(z).sub_(y).mul_(grad * ctx.scale), None, None


def bce(logits: torch.Tensor, target: torch.Tensor, *, reduction: str, gamma: float) -> torch.Tensor:
    return _LogitBCE.apply(foreground_logit(logits), target, _sum_scale(target, reduction))


def ce(logits: torch.Tensor, target: torch.Tensor, *, reduction: str, gamma: float) -> torch.Tensor:
    """Two-class softmax cross-entropy, as in the DINOv2 segmentation tutorial the seed followed.
    For two classes -log softmax(z)_y is softplus(z_other - z_y): BCE on the log-odds z1 - z0
    (:func:`foreground_logit`), which :func:`bce` computes; torch's ``cross_entropy`` (a log-softmax
    across two strided channels) took 5.0-5.3 ms for 64 masks of 112 px forward and backward on a
    2-core CPU, this 3.4-3.6 ms (BENCHMARKS.md, "ce as BCE on the log-odds")."""
    if logits.shape[1] != 2:
        raise ValueError(f"loss ce: expected logits of 2 channels, got {logits.shape[1]}")
    return bce(logits, target, reduction=reduction, gamma=gamma)


def soft_dice(logits: torch.Tensor, target: torch.Tensor, *, reduction: str, gamma: float) -> torch.Tensor:
    """1 - soft Dice per image, on sigmoid (or softmax) probabilities."""
    probability = torch.sigmoid(foreground_logit(logits))
    overlap = (probability * target).sum((1, 2))
    total = probability.sum((1, 2)) + target.sum((1, 2))
    return _reduce(1 - (2 * overlap + SMOOTH) / (total + SMOOTH), reduction)


def bce_dice(logits: torch.Tensor, target: torch.Tensor, *, reduction: str, gamma: float) -> torch.Tensor:
    return bce(logits, target, reduction=reduction, gamma=gamma) + soft_dice(logits, target, reduction=reduction,
                                                                             gamma=gamma)


def focal(logits: torch.Tensor, target: torch.Tensor, *, reduction: str, gamma: float) -> torch.Tensor:
    """Sigmoid focal loss: BCE scaled by (1 - p_t)^gamma and weighted by FOCAL_ALPHA for the LV.

    Through the logit of the wrong class, m = z(1 - 2y) for a target in {0, 1}: -log p_t is
    softplus(m) and 1 - p_t is sigmoid(m), each in one pass and to float32's precision where a head
    is confident (1 - sigmoid(z) rounds 1 - p_t to a few digits: 1.7-2.8e-4 off a confident head's loss;
    this form, 4e-8), forward and backward 2.4-2.5x as fast (bench/loss.py). sigmoid(m) is kept
    above 0, where gamma < 1 would make its power's gradient infinite (and the step NaN). The
    gradient is written out (:class:`_Focal`)."""
    return _Focal.apply(foreground_logit(logits), target, gamma, _sum_scale(target, reduction))


class _Focal(torch.autograd.Function):
    """focal's sum over the pixels times ``scale``, and its gradient in closed form: with
    m = z(1 - 2y), s = sigmoid(m) and a pixel's loss alpha_t softplus(m) s^gamma,
    d/dz = ((1 - FOCAL_ALPHA) - y) s^gamma (s + gamma softplus(m) sigmoid(-m)), since
    (1 - 2y) alpha_t = (1 - FOCAL_ALPHA) - y for y in {0, 1}. Autograd went back through each of
    the formula's dozen passes: 6.3-6.4 ms for 64 masks of 112 px on a 2-core CPU, forward and
    backward, against 3.7-4.1 ms (BENCHMARKS.md, "focal's gradient written out")."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, y: torch.Tensor, gamma: float, scale: float) -> torch.Tensor:
        y = y.to(z.dtype)
        wrong = torch.addcmul(z, z, y, value=-2)  # z(1 - 2y): z or -z, exactly
        sigma = torch.sigmoid(wrong).clamp_(min=torch.finfo(wrong.dtype).tiny)
        modulation = sigma.pow(gamma)
        positive = _softplus_values(wrong)
        ctx.save_for_backward(wrong, y, sigma, modulation, positive)
        ctx.gamma, ctx.scale = gamma, scale
        alpha_t = y.mul(2 * FOCAL_ALPHA - 1).add_(1 - FOCAL_ALPHA)
        return alpha_t.mul_(positive).mul_(modulation).sum() * scale

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        wrong, y, sigma, modulation, positive = ctx.saved_tensors
        slope = torch.sigmoid(wrong.neg()).mul_(positive).mul_(ctx.gamma).add_(sigma).mul_(modulation)
        return slope.mul_(y.neg().add_(1 - FOCAL_ALPHA)).mul_(grad * ctx.scale), None, None, None


def bce_on_grid(grid: torch.Tensor, target: torch.Tensor, *, reduction: str, gamma: float) -> torch.Tensor:
    """:func:`bce` of (B, C, h, w) logits on a patch grid upsampled bilinearly to the (B, H, W)
    bool ``target``'s size, as a probe upsamples them (lvseg.models.heads.upsample_bilinear). On a
    CPU with the native kernels the mask-sized logits are never made: each image's rows are
    upsampled, scored and taken back to the grid while in the CPU's cache (lvseg.nativeops). For 64
    masks of 112 px on a 2-core CPU that is ~1 ms, where upsampling, the loss and their gradients as
    separate passes took ~2.5 ms on native kernels and ~4.5 ms on PyTorch's (BENCHMARKS.md,
    "Native CPU kernels"). Elsewhere: upsampled, then :func:`bce`."""
    z, size = foreground_logit(grid), tuple(target.shape[1:])
    if nativeops.bilinear_bce_ready(z, target, size):  # (build_grid_loss checked the shapes)
        rows = interpolation_matrix(z.shape[1], size[0], z.device)
        cols = interpolation_matrix(z.shape[2], size[1], z.device)
        return nativeops.bilinear_bce(z, target, rows, cols, _sum_scale(target, reduction))
    return bce(upsample_bilinear(grid, size), target.float(), reduction=reduction, gamma=gamma)


def ce_on_grid(grid: torch.Tensor, target: torch.Tensor, *, reduction: str, gamma: float) -> torch.Tensor:
    """:func:`ce` from the patch grid: BCE of the upsampled log-odds, which are the log-odds of the
    upsampled logits (upsampling is linear)."""
    if grid.shape[1] != 2:
        raise ValueError(f"loss ce: expected logits of 2 channels, got {grid.shape[1]}")
    return bce_on_grid(grid, target, reduction=reduction, gamma=gamma)


@dataclass(frozen=True)
class LossSpec:
    fn: Callable[..., torch.Tensor]
    channels: int  # output channels the model needs: 2 for softmax cross-entropy, else 1
    on_grid: Callable[..., torch.Tensor] | None = None  # the loss of a patch grid's logits, upsampled


LOSSES: dict[str, LossSpec] = {"bce": LossSpec(bce, 1, bce_on_grid), "ce": LossSpec(ce, 2, ce_on_grid),
                               "dice": LossSpec(soft_dice, 1), "bce_dice": LossSpec(bce_dice, 1),
                               "focal": LossSpec(focal, 1)}


def channels(name: str) -> int:
    """Output channels a model needs for this loss."""
    return lookup(LOSSES, name, "loss").channels


def build_loss(name: str, *, reduction: str, gamma: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``loss(logits, target) -> scalar`` for a registered name."""
    fn = lookup(LOSSES, name, "loss").fn
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown loss reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_shapes(logits, target)
        return fn(logits, target, reduction=reduction, gamma=gamma)

    return loss


def build_grid_loss(name: str, *, reduction: str,
                    gamma: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """``loss(grid_logits, bool_target) -> scalar``: the loss of (B, C, h, w) logits on a patch
    grid upsampled bilinearly to the (B, H, W) target, equal up to rounding to ``build_loss``'s of
    the upsampled logits; None for the losses that have no such form."""
    fn = lookup(LOSSES, name, "loss").on_grid
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown loss reduction {reduction!r}; known: {', '.join(REDUCTIONS)}")
    if fn is None:
        return None

    def loss(grid: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if grid.ndim != 4 or target.ndim != 3 or len(grid) != len(target):
            raise ValueError(f"loss: target of shape {tuple(target.shape)} for grid logits {tuple(grid.shape)}")
        return fn(grid, target, reduction=reduction, gamma=gamma)

    return loss


def _check_shapes(logits: torch.Tensor, target: torch.Tensor) -> None:
    """(B, C, H, W) logits need a (B, H, W) target. torch's BCE refused any other; the losses
    written here (BCE's in-place passes, focal, Dice) would broadcast it without a word."""
    if logits.ndim != 4 or (logits.shape[0], *logits.shape[2:]) != tuple(target.shape):
        raise ValueError(f"loss: target of shape {tuple(target.shape)} for logits {tuple(logits.shape)}")
