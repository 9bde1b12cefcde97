from __future__ import annotations

import itertools

import pytest
import torch

from lvseg.optim import OPTIMIZERS, SCHEDULES, build_optimizer, lr_factor


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_takes_a_step_downhill(name: str) -> None:
    weight = torch.nn.Parameter(torch.tensor([3.0]))
    optimizer = build_optimizer(name, [weight], lr=0.1, weight_decay=0.01, momentum=0.5, nesterov=True)
    (weight**2).sum().backward()
    optimizer.step()
    assert weight.item() < 3.0


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_starts_at_the_base_rate_and_never_rises(name: str) -> None:
    factor = lr_factor(name, epochs=20, warmup_epochs=0, step_epochs=5, step_gamma=0.1)
    values = [factor(e) for e in range(20)]
    assert values[0] == 1.0 and all(b <= a for a, b in itertools.pairwise(values))


def test_schedule_shapes() -> None:
    plain = dict(warmup_epochs=0, step_epochs=10, step_gamma=0.1)
    assert lr_factor("cosine", epochs=10, **plain)(5) == pytest.approx(0.5)
    assert lr_factor("step", epochs=30, warmup_epochs=0, step_epochs=10, step_gamma=0.5)(25) == pytest.approx(0.25)
    warm = lr_factor("constant", epochs=10, warmup_epochs=3, step_epochs=10, step_gamma=0.1)
    assert [warm(e) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        build_optimizer("lion", [torch.nn.Parameter(torch.zeros(1))], lr=1.0, weight_decay=0, momentum=0,
                        nesterov=False)
    with pytest.raises(ValueError, match="unknown schedule 'poly'"):
        lr_factor("poly", epochs=10, warmup_epochs=0, step_epochs=10, step_gamma=0.1)
