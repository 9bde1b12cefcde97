from __future__ import annotations

import pytest
import torch

from lvseg.models import halflinear
from lvseg.models.halflinear import half_rows_linear

CHANNELS = 24


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Seven rows a chunk, so that a few dozen rows take several chunks and a partial last one."""
    monkeypatch.setattr(halflinear, "CHUNK_BYTES", 4 * CHANNELS * 7)
    return 7


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_are_those_over_a_float32_copy(dtype: torch.dtype, with_bias: bool, small_chunks) -> None:
    torch.manual_seed(0)
    rows = torch.randn(30, CHANNELS).to(dtype)  # 4 chunks of 7 and one of 2
    weight, bias = torch.randn(2, CHANNELS), torch.randn(2) if with_bias else None
    upstream = torch.randn(30, 2)

    def run(how) -> list[torch.Tensor]:
        x = rows.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        b = bias.clone().requires_grad_() if with_bias else None
        out = how(x, w, b)
        (out * upstream).sum().backward()
        return [out.detach(), x.grad, w.grad] + ([b.grad] if with_bias else [])

    ours = run(half_rows_linear)
    copy = run(lambda x, w, b: torch.nn.functional.linear(x.float(), w, b))
    assert ours[0].dtype == torch.float32 and ours[1].dtype == dtype
    assert torch.equal(ours[0], copy[0])  # each row's product by the same kernel on the same values
    for got, expected in zip(ours[1:], copy[1:], strict=True):  # the weight's sums run chunk by chunk
        assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_the_weight_gradient_sums_every_chunk_once(small_chunks) -> None:
    """All-ones rows and upstream gradient: each weight's gradient counts the rows, so a chunk
    dropped, repeated or read from a stale scratch tensor changes it."""
    rows = torch.ones(30, CHANNELS, dtype=torch.float16)
    rows[-2:] = 2  # the partial last chunk
    weight = torch.zeros(1, CHANNELS, requires_grad=True)
    half_rows_linear(rows, weight, None).sum().backward()
    assert torch.equal(weight.grad, torch.full((1, CHANNELS), 28.0 + 2 * 2))


@pytest.mark.parametrize("rows", [torch.randn(4, CHANNELS), torch.randn(2, 4, CHANNELS).half()])
def test_rows_other_than_2_d_fp16_or_bf16_are_refused(rows: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="expected 2-d fp16 or bf16 rows"):
        half_rows_linear(rows, torch.randn(1, CHANNELS), None)


def test_the_chunks_are_visited_on_one_thread_and_the_count_is_restored(small_chunks) -> None:
    """A cast over two threads then MKL's product, chunk after chunk, fell into a 5-6x slower mode
    for seconds at a time on a 2-core VM (BENCHMARKS.md); one thread never did."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        halflinear.for_float32_chunks(torch.ones(30, CHANNELS, dtype=torch.float16),
                                      lambda start, chunk: seen.append((start, len(chunk), torch.get_num_threads())))
        assert seen == [(0, 7, 1), (7, 7, 1), (14, 7, 1), (21, 7, 1), (28, 2, 1)]
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="a visit failed"):
            halflinear.for_float32_chunks(torch.ones(3, CHANNELS, dtype=torch.float16), _fail)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def _fail(start: int, chunk: torch.Tensor) -> None:
    raise RuntimeError("a visit failed")
