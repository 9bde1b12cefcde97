"""A linear map over reduced-precision rows (the cache's fp16 features) computed in float32, a
chunk of rows at a time.

Casting a batch to float32 before a float32 product writes twice the features' bytes, then reads
them back in the forward pass and again for the weight gradient; for a head as small as a linear
probe each of those passes runs at memory bandwidth on a CPU. Here each chunk of rows is cast into
a float32 scratch tensor small enough to stay in the CPU's cache and multiplied there, so the
fp16 rows are read once forward and once backward. fp16 -> float32 is exact, and each chunk goes
through the same float32 kernel: the results are those of the product over the cast batch, up to
the order in which the weight gradient's chunks are summed. On a 2-core CPU a linear-probe epoch
over 2,000 base-sized frames took 0.35-0.41 s against 0.43-0.49 s over float32 copies
(bench/resident.py; BENCHMARKS.md, "The linear head takes the fp16 rows on a CPU").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

HALF_DTYPES = (torch.float16, torch.bfloat16)  # the rows this computes from
CHUNK_BYTES = 3 << 20  # float32 scratch per chunk, kept in a CPU's cache (1,024 rows of 768)
_SCRATCH = threading.local()  # one scratch tensor per thread: autograd runs a CPU backward there


def half_rows_linear(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``nn.functional.linear(rows.float(), weight, bias)`` for 2-d fp16 or bf16 ``rows`` and
    float32 parameters, without a float32 copy of ``rows``; differentiable in all three."""
    if rows.ndim != 2 or rows.dtype not in HALF_DTYPES:
        raise ValueError(f"expected 2-d fp16 or bf16 rows, got {rows.dtype} of shape {tuple(rows.shape)}")
    return _HalfRowsLinear.apply(rows, weight, bias)


class _HalfRowsLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        out = torch.empty((len(rows), len(weight)), dtype=torch.float32, device=rows.device)

        def product(start: int, chunk: torch.Tensor) -> None:
            into = out[start:start + len(chunk)]
            if bias is None:
                torch.mm(chunk, weight.t(), out=into)
            else:
                torch.addmm(bias, chunk, weight.t(), out=into)

        for_float32_chunks(rows, product)
        ctx.save_for_backward(rows, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, weight = ctx.saved_tensors
        grad_rows = (grad @ weight).to(rows.dtype) if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros_like(weight)
            for_float32_chunks(rows, lambda start, chunk: grad_weight.addmm_(grad[start:start + len(chunk)].t(), chunk))
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_rows, grad_weight, grad_bias


def for_float32_chunks(rows: torch.Tensor, visit: Callable[[int, torch.Tensor], object]) -> None:
    """``visit(start, rows[start:start + n] cast to float32)`` for each chunk in turn, all in the
    same scratch tensor (a chunk is valid during its visit). On a CPU the loop runs on one thread:
    a cast spread over two threads, then MKL's product, then the next cast, ran 5-6x slower than
    usual for seconds at a time on a 2-core VM (BENCHMARKS.md), where one thread never did. torch's
    count is the process's: a thread that makes its first parallel call meanwhile keeps one."""
    step = max(1, CHUNK_BYTES // (4 * rows.shape[1]))
    scratch = _scratch(min(step, len(rows)), rows.shape[1], rows.device)
    with _one_thread(rows.device):
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            visit(start, scratch[:len(part)].copy_(part))


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _scratch(count: int, channels: int, device: torch.device) -> torch.Tensor:
    """A float32 (count, channels) tensor reused by this thread: a new one at every call faulted
    its pages in afresh on a CPU, which cost about as much as the cast; even with freed pages kept
    (lvseg.hostmemory), forward and backward over 64 base-sized frames took 6.0-6.6 ms with a new
    one against 5.4-5.6 ms."""
    held = getattr(_SCRATCH, "tensor", None)
    if held is None or held.shape[0] < count or held.shape[1] != channels or held.device != device:
        held = _SCRATCH.tensor = torch.empty((count, channels), dtype=torch.float32, device=device)
    return held[:count]
