"""Differentiable operations over lvseg/native.c's kernels, for tensors on a CPU: the linear head
over fp16 rows (gathered by index where they lie), bilinear upsampling, BCE with logits. Each
``*_ready`` says whether its kernel takes the arguments (and the library is there); the callers
use PyTorch's operations otherwise. The features are frozen: the head gives no gradient to them.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.autograd.function import once_differentiable

from lvseg import native
from lvseg.native import LANES, MAX_GRID, MAX_SIZE, pointer, threads


def _on_cpu(*tensors: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and not torch.is_autocast_enabled("cpu") for t in tensors)


def head_ready(rows: torch.Tensor) -> bool:
    """Whether :func:`rows_linear` takes (N, h, w, C) ``rows``: contiguous fp16 without gradient,
    on a CPU, C a multiple of 16."""
    return (_on_cpu(rows) and rows.dtype == torch.float16 and rows.ndim == 4 and rows.shape[-1] % LANES == 0
            and rows.is_contiguous() and not rows.requires_grad and native.library() is not None)


def rows_linear(rows: torch.Tensor, frames: torch.Tensor | None, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
    """(n, h, w, K) float32 ``rows[frames] @ weight.T + bias`` for (N, h, w, C) fp16 ``rows`` and
    int64 ``frames`` (None: all N); differentiable in ``weight`` and ``bias``."""
    if frames is not None and len(frames) and not (int(frames.min()) >= 0 and int(frames.max()) < len(rows)):
        raise IndexError(f"frames {int(frames.min())}..{int(frames.max())} out of range for {len(rows)} rows")
    return _RowsLinear.apply(rows, frames, weight, bias)


class _RowsLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: torch.Tensor, frames: torch.Tensor | None, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        frames = None if frames is None else frames.to(torch.int64).contiguous()  # the kernel reads int64
        weight, bias = weight.detach().float().contiguous(), None if bias is None else bias.detach().float()
        count = len(rows) if frames is None else len(frames)
        out = torch.empty((count, *rows.shape[1:3], len(weight)), dtype=torch.float32)
        native.library().head_forward(rows.data_ptr(), pointer(frames), count, rows.shape[1] * rows.shape[2],
                                      rows.shape[3], weight.data_ptr(), pointer(bias), len(weight),
                                      out.data_ptr(), threads())
        ctx.save_for_backward(rows, frames, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, frames, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_weight = torch.empty_like(weight)
        partial = torch.empty(threads() * weight.numel())
        native.library().head_weight_grad(rows.data_ptr(), pointer(frames), len(grad), rows.shape[1] * rows.shape[2],
                                          rows.shape[3], grad.data_ptr(), len(weight), grad_weight.data_ptr(),
                                          partial.data_ptr(), threads())
        grad_bias = grad.sum((0, 1, 2)) if ctx.has_bias else None
        return None, None, grad_weight, grad_bias


def upsample_ready(logits: torch.Tensor, size: tuple[int, int]) -> bool:
    """Whether :func:`upsample` takes (B, K, h, w) ``logits`` to ``size``: float32 on a CPU, a
    grid of at most 64 and a size of at most 1,024 a side."""
    return (_on_cpu(logits) and logits.dtype == torch.float32 and logits.ndim == 4
            and max(logits.shape[-2:]) <= MAX_GRID and max(size) <= MAX_SIZE and native.library() is not None)


@lru_cache(maxsize=32)
def taps(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, 2) int32 input indices and float32 weights of an (out, in) linear-interpolation
    matrix, whose rows have one or two non-zero weights (a single one is paired with a zero)."""
    size_out = len(matrix)
    index, weights = torch.zeros((size_out, 2), dtype=torch.int32), torch.zeros((size_out, 2))
    for row in range(size_out):
        (nonzero,) = torch.nonzero(matrix[row], as_tuple=True)
        if not 1 <= len(nonzero) <= 2:
            raise ValueError(f"interpolation row {row} has {len(nonzero)} non-zero weights, expected 1 or 2")
        index[row] = nonzero[[0, -1]].int()
        weights[row, :len(nonzero)] = matrix[row, nonzero]
    return index, weights


@lru_cache(maxsize=32)
def padded(matrix: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """``matrix`` (or its transpose) with zero columns up to a multiple of 16, the kernels' lanes."""
    matrix = matrix.t() if transposed else matrix
    columns = -(-matrix.shape[1] // LANES) * LANES
    return torch.nn.functional.pad(matrix.float(), (0, columns - matrix.shape[1])).contiguous()


def upsample(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows @ logits @ cols.T`` for (H, h) and (W, w) linear-interpolation matrices."""
    return _Upsample.apply(logits, rows, cols)


class _Upsample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        logits = logits.contiguous()
        (count, channels, h, w), (H, W) = logits.shape, (len(rows), len(cols))
        out = torch.empty((count, channels, H, W))
        row_taps, row_weights = taps(rows)
        columns_t = padded(cols, transposed=True)
        native.library().upsample_forward(logits.data_ptr(), count * channels, h, w, H, W, row_taps.data_ptr(),
                                          row_weights.data_ptr(), columns_t.data_ptr(), out.data_ptr(), threads())
        ctx.save_for_backward(rows, cols)
        ctx.grid = (h, w)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, cols = ctx.saved_tensors
        grad = grad.contiguous()
        (count, channels, H, W), (h, w) = grad.shape, ctx.grid
        out = torch.empty((count, channels, h, w))
        row_taps, row_weights = taps(rows)
        native.library().upsample_backward(grad.data_ptr(), count * channels, h, w, H, W, row_taps.data_ptr(),
                                           row_weights.data_ptr(), padded(cols).data_ptr(), out.data_ptr(),
                                           threads())
        return out, None, None


def bce_ready(z: torch.Tensor) -> bool:
    return _on_cpu(z) and z.dtype == torch.float32 and native.library() is not None


def bce_sum(z: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over the elements of BCE with logits ``z`` and float32 targets ``y``, in float64."""
    z, y = z.contiguous(), y.contiguous()
    return native.library().bce_sum(z.data_ptr(), y.data_ptr(), z.numel(), threads())


def bce_grad(z: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
    """(sigmoid(z) - y) * scale."""
    z, y = z.contiguous(), y.contiguous()
    out = torch.empty_like(z)
    native.library().bce_grad(z.data_ptr(), y.data_ptr(), z.numel(), scale, out.data_ptr(), threads())
    return out


def bilinear_bce_ready(grid: torch.Tensor, target: torch.Tensor, size: tuple[int, int]) -> bool:
    """Whether :func:`bilinear_bce` takes (B, h, w) ``grid`` logits and (B, H, W) bool ``target``."""
    return upsample_ready(grid[:, None], size) and target.dtype == torch.bool and target.device.type == "cpu"


def bilinear_bce(grid: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 scale: float) -> torch.Tensor:
    """``BCE-with-logits(rows @ grid @ cols.T, target)`` summed, times ``scale``, for (B, h, w)
    float32 logits on the patch grid and (B, H, W) bool masks, without the upsampled logits:
    (H, W) rows are made, scored and taken back to the grid while in the CPU's cache."""
    return _BilinearBCE.apply(grid, target, rows, cols, scale)


class _BilinearBCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grid: torch.Tensor, target: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                scale: float) -> torch.Tensor:
        grid, target = grid.contiguous(), target.contiguous()
        (count, h, w), (H, W) = grid.shape, target.shape[1:]
        if (len(rows), len(cols)) != (H, W) or len(target) != count or target.dtype != torch.bool:
            raise ValueError(f"bilinear_bce: {target.dtype} target {tuple(target.shape)} for {count} grids to "
                             f"{len(rows)}x{len(cols)} (bool masks of that size expected)")
        row_taps, row_weights = taps(rows)
        gradient = torch.empty_like(grid)
        total = native.library().bilinear_bce(grid.data_ptr(), target.data_ptr(), count, h, w, H, W,
                                              row_taps.data_ptr(), row_weights.data_ptr(),
                                              padded(cols, transposed=True).data_ptr(), padded(cols).data_ptr(),
                                              scale, gradient.data_ptr(), threads())
        ctx.save_for_backward(gradient)
        return torch.tensor(total * scale, dtype=grid.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (gradient,) = ctx.saved_tensors
        return gradient * grad, None, None, None, None
