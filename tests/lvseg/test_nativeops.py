"""lvseg.nativeops against PyTorch's operations in float64: values, gradients, the rows they
read, and the arguments they refuse."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lvseg import nativeops
from lvseg.models.heads import interpolation_matrix

from .conftest import native_or_skip

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _native() -> None:
    native_or_skip()


def _rows(count: int, channels: int, grid: int = 4, seed: int = 0) -> torch.Tensor:
    """(count, grid, grid, channels) fp16 rows: a split's features, channels-last."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, grid, grid, channels, generator=generator).half()


@pytest.mark.parametrize("channels", [16, 48, 64, 768])  # the four-chain loop, its remainder, both
@pytest.mark.parametrize("outputs", [1, 2])
@pytest.mark.parametrize("with_bias", [True, False])
def test_rows_linear_is_the_product_over_the_gathered_rows(channels: int, outputs: int, with_bias: bool) -> None:
    rows, frames = _rows(9, channels), torch.tensor([7, 0, 3, 3, 8])
    weight = torch.randn(outputs, channels, requires_grad=True)
    bias = torch.randn(outputs, requires_grad=True) if with_bias else None
    upstream = torch.randn(5, 4, 4, outputs)
    out = nativeops.rows_linear(rows, frames, weight, bias)
    (out * upstream).sum().backward()
    exact_weight = weight.detach().double().requires_grad_()
    exact_bias = bias.detach().double().requires_grad_() if with_bias else None
    exact = F.linear(rows[frames].double(), exact_weight, exact_bias)
    (exact * upstream.double()).sum().backward()
    assert out.shape == (5, 4, 4, outputs) and out.dtype == torch.float32
    assert torch.allclose(out.double(), exact, rtol=1e-5, atol=1e-5)
    assert torch.allclose(weight.grad.double(), exact_weight.grad, rtol=1e-5, atol=1e-4)
    if with_bias:
        assert torch.allclose(bias.grad.double(), exact_bias.grad, rtol=1e-5, atol=1e-4)


def test_rows_by_index_and_the_gathered_batch_give_the_same_bits() -> None:
    """A resident split's rows picked by index, and the same rows gathered first (a streamed
    batch): the same arithmetic, so the same training (tests/lvseg/test_resident.py)."""
    rows, frames = _rows(12, 64), torch.tensor([11, 2, 5])
    weight, bias = torch.randn(1, 64), torch.randn(1)
    by_index = nativeops.rows_linear(rows, frames, weight.clone().requires_grad_(), bias)
    gathered = nativeops.rows_linear(rows[frames].contiguous(), None, weight.clone().requires_grad_(), bias)
    assert torch.equal(by_index, gathered)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_weight_gradient_sums_every_row_once_whatever_the_threads(threads: int) -> None:
    """All-ones rows and gradient: each weight's gradient counts the rows (3 x 16 patches), so a row
    dropped or added twice by the threads' split changes it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        weight = torch.zeros(2, 32, requires_grad=True)
        nativeops.rows_linear(torch.ones(5, 4, 4, 32).half(), torch.tensor([0, 4, 2]), weight, None).sum().backward()
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(weight.grad, torch.full((2, 32), 48.0))


def test_int32_frames_pick_the_same_rows() -> None:
    rows, weight = _rows(9, 16), torch.randn(1, 16)
    assert torch.equal(nativeops.rows_linear(rows, torch.tensor([8, 1], dtype=torch.int32), weight, None),
                       nativeops.rows_linear(rows, torch.tensor([8, 1]), weight, None))


def test_frames_out_of_range_are_refused_before_any_row_is_read() -> None:
    with pytest.raises(IndexError, match="frames 0..9 out of range for 9 rows"):
        nativeops.rows_linear(_rows(9, 16), torch.tensor([0, 9]), torch.zeros(1, 16), None)


@pytest.mark.parametrize("rows, why", [
    (torch.zeros(2, 4, 4, 16), "float32"), (torch.zeros(2, 4, 4, 24).half(), "24 channels"),
    (torch.zeros(2, 16, 4, 4).half().permute(0, 2, 3, 1), "not contiguous"),
    (torch.zeros(2, 4, 4, 16).half().requires_grad_(), "needs a gradient"),
])
def test_the_head_kernel_declines_what_it_does_not_take(rows: torch.Tensor, why: str) -> None:
    assert not nativeops.head_ready(rows), why
    assert nativeops.head_ready(torch.zeros(2, 4, 4, 16).half())


@pytest.mark.parametrize("grid, size", [((16, 16), (112, 112)), ((14, 9), (100, 37)), ((16, 16), (16, 16)),
                                        ((32, 32), (224, 224)), ((7, 5), (3, 4))])
def test_upsampling_is_torchs_bilinear_interpolation(grid: tuple[int, int], size: tuple[int, int]) -> None:
    """Up, the same size and down (torch's bilinear without antialiasing also takes two taps a
    pixel), with sizes that are not multiples of the kernels' 16 lanes."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, *grid, generator=generator).requires_grad_()
    rows, cols = (interpolation_matrix(n, m, CPU) for n, m in zip(grid, size, strict=True))
    assert nativeops.upsample_ready(logits, size)
    out = nativeops.upsample(logits, rows, cols)
    upstream = torch.randn(out.shape, generator=generator)
    (out * upstream).sum().backward()
    exact_logits = logits.detach().double().requires_grad_()
    exact = F.interpolate(exact_logits, size=size, mode="bilinear", align_corners=False)
    (exact * upstream.double()).sum().backward()
    assert torch.allclose(out.double(), exact, rtol=0, atol=1e-5)
    assert torch.allclose(logits.grad.double(), exact_logits.grad, rtol=1e-5, atol=1e-4)


def test_upsampling_declines_grids_and_sizes_over_its_buffers() -> None:
    assert not nativeops.upsample_ready(torch.zeros(1, 1, 65, 16), (112, 112))
    assert not nativeops.upsample_ready(torch.zeros(1, 1, 16, 16), (112, 1025))
    assert not nativeops.upsample_ready(torch.zeros(1, 1, 16, 16).double(), (112, 112))


def test_taps_refuse_a_matrix_of_three_weights_a_row() -> None:
    with pytest.raises(ValueError, match="interpolation row 1 has 3 non-zero weights"):
        nativeops.taps(torch.tensor([[1.0, 0, 0], [0.2, 0.3, 0.5]]))


@pytest.mark.parametrize("count", [1, 15, 16, 17, 12_345])  # whole vectors and partial last ones
def test_bce_sum_and_gradient_against_float64(count: int) -> None:
    generator = torch.Generator().manual_seed(count)
    z = torch.randn(count, generator=generator) * 8
    y = (torch.rand(count, generator=generator) > 0.5).float()
    exact = F.binary_cross_entropy_with_logits(z.double(), y.double(), reduction="sum")
    assert nativeops.bce_sum(z, y) == pytest.approx(exact.item(), rel=1e-6)
    expected = (torch.sigmoid(z.double()) - y.double()) * 0.25
    assert torch.allclose(nativeops.bce_grad(z, y, 0.25).double(), expected, rtol=1e-6, atol=1e-9)


def test_bce_sum_is_nan_for_a_nan_logit_and_inf_safe() -> None:
    z, y = torch.tensor([0.0, 1e30, -1e30, 100.0]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert nativeops.bce_sum(z, y) == pytest.approx(math.log(2) + 100.0)
    assert torch.isfinite(nativeops.bce_grad(z, y, 1.0)).all()
    assert math.isnan(nativeops.bce_sum(torch.tensor([0.0, math.nan]), torch.zeros(2)))


def test_bilinear_bce_refuses_float_masks_and_other_sizes() -> None:
    rows = interpolation_matrix(16, 112, CPU)
    with pytest.raises(ValueError, match=r"torch.float32 target \(2, 112, 112\) for 2 grids to 112x112"):
        nativeops.bilinear_bce(torch.zeros(2, 16, 16), torch.zeros(2, 112, 112), rows, rows, 1.0)
    with pytest.raises(ValueError, match=r"target \(2, 100, 112\) for 2 grids to 112x112"):
        nativeops.bilinear_bce(torch.zeros(2, 16, 16), torch.zeros(2, 100, 112, dtype=torch.bool), rows, rows, 1.0)


def test_a_smaller_team_than_asked_for_still_does_every_row(tmp_path) -> None:
    """OMP_THREAD_LIMIT=1 gives one thread where torch asks for two: the work is split over the
    team OpenMP gives, so the sums are whole (in a process of its own: the limit is read at start)."""
    import os
    import subprocess
    import sys

    code = ("import torch; from lvseg import nativeops; torch.set_num_threads(2); "
            "w = torch.zeros(1, 32, requires_grad=True); "
            "nativeops.rows_linear(torch.ones(5, 4, 4, 32).half(), torch.tensor([0, 4, 2]), w, None).sum().backward(); "
            "z = torch.zeros(8, 16); print(w.grad.unique().tolist(), round(nativeops.bce_sum(z, z), 4))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[48.0]", str(round(128 * math.log(2), 4))]
