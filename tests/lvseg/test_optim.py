from __future__ import annotations

import copy
import itertools
import subprocess
import sys

import pytest
import torch

from lvseg import optim
from lvseg.optim import OPTIMIZERS, SCHEDULES, build_optimizer, lr_factor


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_takes_a_step_downhill(name: str) -> None:
    weight = torch.nn.Parameter(torch.tensor([3.0]))
    optimizer = build_optimizer(name, [weight], lr=0.1, weight_decay=0.01, momentum=0.5, nesterov=True)
    (weight**2).sum().backward()
    optimizer.step()
    assert weight.item() < 3.0


def _train(name: str, model: torch.nn.Module, batches: list[torch.Tensor]) -> dict[str, object]:
    """Steps with a decaying rate, rebuilding optimizer and schedule from their state dicts halfway
    (a resumed run); returns the model's and the optimizer's final state."""
    Schedule = torch.optim.lr_scheduler.LRScheduler

    def build(state: tuple[dict, dict] | None = None) -> tuple[torch.optim.Optimizer, Schedule]:
        opt = build_optimizer(name, model.parameters(), lr=0.05, weight_decay=0.01, momentum=0.9, nesterov=True)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.7**epoch)
        if state:
            opt.load_state_dict(state[0]), schedule.load_state_dict(state[1])
        return opt, schedule

    opt, schedule = build()
    for i, x in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        opt.step(), schedule.step()
        if i == len(batches) // 2:
            opt, schedule = build((copy.deepcopy(opt.state_dict()), schedule.state_dict()))
    return {"model": model.state_dict(), "optimizer": opt.state_dict()}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_updates_exactly_as_torch_optim_does(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model, batches = torch.nn.Linear(16, 4), [torch.randn(8, 16) for _ in range(6)]
    ours = _train(name, copy.deepcopy(model), batches)
    for eager in (optim.SGD, optim.Adam, optim.AdamW):  # the builders now get torch's own classes
        monkeypatch.setattr(optim, eager.__name__, eager.__bases__[0])
    theirs = _train(name, copy.deepcopy(model), batches)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)  # parameters, optimizer state and groups, exactly


# A new trial worker would otherwise spend ~2.4 s of one core importing torch._dynamo (lvseg.optim).
NO_DYNAMO = """
import sys, torch
from lvseg.optim import OPTIMIZERS, build_optimizer
for name in OPTIMIZERS:
    weight = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer(name, [weight], lr=0.1, weight_decay=0.01, momentum=0.9, nesterov=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5)
    opt.zero_grad(), weight.square().sum().backward(), opt.step(), schedule.step()
    opt.load_state_dict(opt.state_dict())
print(sorted(name for name in sys.modules if name.startswith("torch._dynamo")))
"""


def test_optimizers_never_import_torch_dynamo() -> None:
    run = subprocess.run([sys.executable, "-c", NO_DYNAMO], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]", "torch's guards are back: see lvseg/optim.py's docstring"


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
