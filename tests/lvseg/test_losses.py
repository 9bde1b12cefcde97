from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lvseg.losses import (
    FOCAL_ALPHA,
    LOSSES,
    build_grid_loss,
    build_loss,
    channels,
    foreground_logit,
    log1p_exp_neg,
    softplus,
)

from .conftest import native_or_skip


def _target() -> torch.Tensor:
    target = torch.zeros(2, 8, 8)
    target[:, 2:6, 2:6] = 1
    return target


def _logits(target: torch.Tensor, sign: float, out: int) -> torch.Tensor:
    z = sign * 6 * (2 * target - 1)
    return z[:, None] if out == 1 else torch.stack([-z / 2, z / 2], 1)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_every_loss_prefers_right_over_wrong_and_has_gradients(name: str, reduction: str) -> None:
    loss = build_loss(name, reduction=reduction, gamma=2.0)
    target = _target()
    right = _logits(target, 1, channels(name)).requires_grad_()
    wrong = _logits(target, -1, channels(name))
    value = loss(right, target)
    assert torch.isfinite(value) and value < loss(wrong, target)
    value.backward()
    assert right.grad is not None and torch.isfinite(right.grad).all()


def test_sum_is_mean_times_pixels_for_bce() -> None:
    target, logits = _target(), torch.randn(2, 1, 8, 8)
    assert build_loss("bce", reduction="sum", gamma=2.0)(logits, target) == pytest.approx(
        build_loss("bce", reduction="mean", gamma=2.0)(logits, target).item() * 128, rel=1e-5)


def _bce_logits(kind: str, target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(target.shape, generator=generator, dtype=target.dtype)
    if kind == "confident":  # right by ~12: each pixel's loss ~1e-5, all in the log1p term
        return ((2 * target - 1) * 12 + noise)[:, None]
    return (noise * (3.0 if kind == "moderate" else 1e4))[:, None]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["moderate", "confident", "huge"])
def test_bce_equals_torchs_in_float64_in_value_and_gradient(reduction: str, dtype: torch.dtype, kind: str,
                                                          kernels: str) -> None:
    """Our BCE (its own passes, or the native kernel; not torch's) against torch's in float64:
    logits of a head in training, of a confident head, and far beyond where sigmoid saturates;
    both targets. The value is held to 1e-6 even in float32, where torch's own kernel is 1e-4 off
    for the confident head (it adds each pixel's ~1e-5 to a logit of ~12, then takes the logit
    away); the gradient to 1e-6 of a pixel's unit (1/pixels for a mean), as for ce below."""
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 37, 41, generator=generator) > 0.5).to(dtype)
    logits = _bce_logits(kind, target, generator)
    ours, exact_logits = logits.clone().requires_grad_(), logits.double().requires_grad_()
    value = build_loss("bce", reduction=reduction, gamma=2.0)(ours, target)
    exact = F.binary_cross_entropy_with_logits(exact_logits[:, 0], target.double(), reduction=reduction)
    assert value.item() == pytest.approx(exact.item(), rel=1e-6 if dtype == torch.float32 else 1e-12, abs=0)
    value.backward()
    exact.backward()
    unit = 1.0 if reduction == "sum" else 1.0 / target.numel()
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(ours.grad.double(), exact_logits.grad, rtol=tolerance, atol=tolerance * unit)


def test_the_native_bce_gradient_keeps_its_digits_where_torchs_cancels() -> None:
    """sigmoid(z) - 1 for a right, confident head (z ~ 12, y = 1) keeps ~3 digits in float32;
    the native kernel's sigmoid(-z) does not cancel: within 1e-6 of float64 pixel by pixel, where
    torch's float32 kernel is ~1e-3 off."""
    native_or_skip()
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 37, 41, generator=generator) > 0.5).float()
    logits = _bce_logits("confident", target, generator)
    ours, exact_logits = logits.clone().requires_grad_(), logits.double().requires_grad_()
    build_loss("bce", reduction="sum", gamma=2.0)(ours, target).backward()
    F.binary_cross_entropy_with_logits(exact_logits[:, 0], target.double(), reduction="sum").backward()
    torchs = logits.clone().requires_grad_()
    F.binary_cross_entropy_with_logits(torchs[:, 0], target, reduction="sum").backward()
    error = ((ours.grad.double() - exact_logits.grad) / exact_logits.grad).abs().max()
    assert error < 1e-6 < ((torchs.grad.double() - exact_logits.grad) / exact_logits.grad).abs().max()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["moderate", "confident", "huge"])
def test_ce_equals_torchs_cross_entropy_in_value_and_gradient(reduction: str, dtype: torch.dtype, kind: str) -> None:
    """ce is computed as BCE on the log-odds z1 - z0; against torch's two-class cross-entropy in
    float64, value and gradient, for logits split between the two channels as a two-channel head
    makes them. In float32 the gradient is held to 1e-6 of a pixel's unit (1/pixels for a mean):
    confident pixels' gradients are differences of nearly equal probabilities, in torch's kernel
    as in ours (both ~1.3e-7 of the unit off float64 here)."""
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 37, 41, generator=generator) > 0.5).to(dtype)
    odds = _bce_logits(kind, target, generator)
    logits = torch.cat([-odds / 2, odds / 2], 1) + torch.randn(odds.shape, generator=generator, dtype=dtype)
    ours, exact_logits = logits.clone().requires_grad_(), logits.double().requires_grad_()
    value = build_loss("ce", reduction=reduction, gamma=2.0)(ours, target)
    exact = F.cross_entropy(exact_logits, target.long(), reduction=reduction)
    assert value.item() == pytest.approx(exact.item(), rel=1e-6 if dtype == torch.float32 else 1e-12, abs=0)
    value.backward()
    exact.backward()
    unit = 1.0 if reduction == "sum" else 1.0 / target.numel()
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(ours.grad.double(), exact_logits.grad, rtol=tolerance, atol=tolerance * unit)


def test_ce_refuses_logits_of_one_channel() -> None:
    with pytest.raises(ValueError, match="loss ce: expected logits of 2 channels, got 1"):
        build_loss("ce", reduction="mean", gamma=2.0)(torch.zeros(2, 1, 8, 8), torch.zeros(2, 8, 8))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_refuses_a_target_that_would_only_broadcast(name: str) -> None:
    logits = torch.zeros(2, channels(name), 8, 8)
    with pytest.raises(ValueError, match=rf"target of shape \(1, 8, 8\) for logits \(2, {channels(name)}, 8, 8\)"):
        build_loss(name, reduction="mean", gamma=2.0)(logits, torch.zeros(1, 8, 8))


@pytest.mark.parametrize("gamma", [0.0, 2.0, 3.5])
def test_focal_equals_torchvisions_sigmoid_focal_loss(gamma: float) -> None:
    from torchvision.ops import sigmoid_focal_loss

    target, logits = _target(), torch.randn(2, 1, 8, 8)
    ours = build_loss("focal", reduction="mean", gamma=gamma)(logits, target)
    assert ours == pytest.approx(sigmoid_focal_loss(logits[:, 0], target, gamma=gamma, reduction="mean").item(),
                                 rel=1e-6)


@pytest.mark.parametrize("kind", ["moderate", "confident"])
def test_focal_in_float32_is_within_1e6_of_float64(kind: str) -> None:
    """A confident head's focal loss in float32 against torchvision's formula in float64 (computed
    as 1 - sigmoid(z) in float32, it was 2.8e-4 off)."""
    from torchvision.ops import sigmoid_focal_loss

    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 37, 41, generator=generator) > 0.5).float()
    logits = _bce_logits(kind, target, generator)
    exact = sigmoid_focal_loss(logits[:, 0].double(), target.double(), gamma=2.0, reduction="mean")
    ours = build_loss("focal", reduction="mean", gamma=2.0)(logits, target)
    assert ours.item() == pytest.approx(exact.item(), rel=1e-6, abs=0)


def _focal_float64(z: torch.Tensor, y: torch.Tensor, gamma: float, reduction: str) -> torch.Tensor:
    """The focal formula through the wrong class's logit m, for autograd in float64: torchvision's
    (1 - sigmoid(z)) loses ~1e-9 of the gradient for a confident head even in float64."""
    m = z * (1 - 2 * y)
    softplus_m = torch.where(m > 0, m + (-m.abs()).exp().log1p(), m.exp().log1p())
    values = ((1 - FOCAL_ALPHA) + (2 * FOCAL_ALPHA - 1) * y) * softplus_m * torch.sigmoid(m) ** gamma
    return values.sum() if reduction == "sum" else values.mean()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.5])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", ["moderate", "confident"])
def test_focal_gradient_is_autograds_through_the_formula(gamma: float, reduction: str, kind: str) -> None:
    """The closed-form gradient against autograd through the formula, in float64; ours in float64
    and in float32."""
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 37, 41, generator=generator) > 0.5).double()
    logits = _bce_logits(kind, target, generator)
    exact = logits.clone().requires_grad_()
    _focal_float64(exact[:, 0], target, gamma, reduction).backward()
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        ours = logits.to(dtype).clone().requires_grad_()
        build_loss("focal", reduction=reduction, gamma=gamma)(ours, target.to(dtype)).backward()
        assert torch.allclose(ours.grad.double(), exact.grad, rtol=rtol, atol=1e-30), dtype


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_gradients_stay_finite_where_sigmoid_saturates(gamma: float) -> None:
    target = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    logits = torch.tensor([[[[200.0, -200.0, -200.0, 200.0]]]], requires_grad=True)
    build_loss("focal", reduction="mean", gamma=gamma)(logits, target).backward()
    assert torch.isfinite(logits.grad).all(), logits.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log1p_exp_neg_is_within_two_ulps_of_float64s_log1p(dtype: torch.dtype) -> None:
    """Over every magnitude a logit has: 0, a head in training's, a confident one's, and those
    where exp(-m) is denormal (float32: 87-104) or underflows to 0."""
    magnitudes = torch.cat([torch.zeros(1), torch.logspace(-30, 3, 200_000), torch.rand(100_000) * 20]).to(dtype)
    exact = magnitudes.double().neg().exp().log1p()
    ours = log1p_exp_neg(magnitudes).double()
    tiny = torch.finfo(dtype).tiny * torch.finfo(dtype).eps  # the smallest denormal: exp(-m) rounds to it
    assert ((ours - exact).abs() <= 2 * torch.finfo(dtype).eps * exact + tiny).all()


def test_log1p_exp_neg_avoids_torchs_log1p_on_a_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU torch's float log1p is the slow kernel; elsewhere (a GPU; here the meta device,
    which has shapes, not values) it is one kernel, where the CPU's form would be four more."""
    calls = []
    log1p_ = torch.Tensor.log1p_
    monkeypatch.setattr(torch.Tensor, "log1p_", lambda self: calls.append(self.device.type) or log1p_(self))
    log1p_exp_neg(torch.ones(3))
    assert calls == []
    assert log1p_exp_neg(torch.ones(3, device="meta")).shape == (3,) and calls == ["meta"]


def test_softplus_and_its_gradient_are_exact_in_float64() -> None:
    """Against log(1 + exp(x)) through torch's log1p (exact in float64, where it is not slow),
    taken as x + log1p(exp(-x)) above 0, so that it does not overflow; the gradient, sigmoid(x)."""
    x = torch.cat([torch.randn(10_000, dtype=torch.float64) * 30,
                   torch.tensor([0.0, 200.0, -200.0, 1e4, -1e4], dtype=torch.float64)]).requires_grad_()
    exact = torch.where(x > 0, x + x.detach().neg().exp().log1p(), x.detach().exp().log1p())
    value = softplus(x)
    assert torch.allclose(value, exact, rtol=4e-16, atol=0)
    value.sum().backward()
    assert torch.equal(x.grad, torch.sigmoid(x.detach()))


def test_two_channel_foreground_logit_is_the_softmax_log_odds() -> None:
    logits = torch.randn(3, 2, 4, 4)
    probability = torch.softmax(logits, 1)[:, 1]
    assert torch.allclose(torch.sigmoid(foreground_logit(logits)), probability, atol=1e-6)


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown loss 'mse'; known: bce, ce"):
        build_loss("mse", reduction="mean", gamma=2.0)
    with pytest.raises(ValueError, match="unknown loss reduction 'max'"):
        build_loss("bce", reduction="max", gamma=2.0)


@pytest.mark.parametrize("name", ["bce", "ce"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("grid, size", [((16, 16), (112, 112)), ((14, 9), (100, 37))])
def test_a_grid_loss_is_the_loss_of_the_upsampled_logits(name: str, reduction: str, grid: tuple[int, int],
                                                        size: tuple[int, int], kernels: str) -> None:
    """build_grid_loss's value and gradient against build_loss's over the logits upsampled in
    float64: a probe trains on the first, evaluates with the second. Sizes that are not a multiple
    of the kernels' 16 lanes included."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, channels(name), *grid, generator=generator) * 4
    target = torch.rand(3, *size, generator=generator) > 0.5
    ours, exact_logits = logits.clone().requires_grad_(), logits.double().requires_grad_()
    value = build_grid_loss(name, reduction=reduction, gamma=2.0)(ours, target)
    upsampled = F.interpolate(exact_logits, size=size, mode="bilinear", align_corners=False)
    exact = build_loss(name, reduction=reduction, gamma=2.0)(upsampled, target.double())
    assert value.item() == pytest.approx(exact.item(), rel=1e-6)
    value.backward()
    exact.backward()
    unit = 1.0 if reduction == "sum" else 1.0 / target.numel()
    assert torch.allclose(ours.grad.double(), exact_logits.grad, rtol=1e-5, atol=1e-5 * unit)


def test_a_grid_loss_is_nan_for_a_nan_logit(kernels: str) -> None:
    """Divergence is read from the epoch's summed loss: a NaN logit must make the loss NaN."""
    logits = torch.zeros(2, 1, 16, 16)
    logits[1, 0, 3, 4] = math.nan
    masks = torch.zeros(2, 112, 112, dtype=torch.bool)
    assert math.isnan(build_grid_loss("bce", reduction="mean", gamma=2.0)(logits, masks))


@pytest.mark.parametrize("name", ["dice", "bce_dice", "focal"])
def test_losses_without_a_grid_form_have_no_grid_loss(name: str) -> None:
    assert build_grid_loss(name, reduction="mean", gamma=2.0) is None


def test_a_grid_loss_refuses_a_target_of_another_count() -> None:
    with pytest.raises(ValueError, match=r"target of shape \(1, 112, 112\) for grid logits \(2, 1, 16, 16\)"):
        build_grid_loss("bce", reduction="mean", gamma=2.0)(torch.zeros(2, 1, 16, 16),
                                                            torch.zeros(1, 112, 112, dtype=torch.bool))

