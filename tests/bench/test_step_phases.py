"""bench/step_phases.py: its phases are the Trainer's own step, cut apart, and the script runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lvseg import native

BENCH = Path(__file__).parents[2] / "bench"
FRAMES = 128  # two steps of 64


@pytest.fixture
def step_phases(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the bench scripts import benchlib as a sibling
    import step_phases

    return step_phases


def test_the_timed_phases_train_as_the_trainer_does(step_phases) -> None:
    """The backward pass cut in two (to the patch grid's logits, then through the head) must give
    the weights one Trainer epoch gives, or the bench would time another computation (on whichever
    kernels this machine has: the native ones where they build)."""
    from benchlib import probe_trainer

    from lvseg.recipes.probe import ProbeConfig, feature_inputs

    masks = np.random.default_rng(1).random((FRAMES, 112, 112)) > 0.5
    inputs = feature_inputs(step_phases.random_features(FRAMES), np.arange(FRAMES), ProbeConfig(device="cpu"))
    states = []
    for run in (lambda trainer: trainer.train_epoch(0), lambda trainer: step_phases.phase_seconds(trainer, 0)):
        with probe_trainer(inputs, FRAMES, step_phases.CHANNELS, 64, torch.device("cpu"), 2) as trainer:
            trainer.train.masks[:] = masks  # a loss with something to learn: the weights move
            initial = [p.detach().clone() for p in trainer.model.parameters()]
            run(trainer)
            states.append([p.detach().clone() for p in trainer.model.parameters()] + [trainer.scheduler.last_epoch])
    trained, timed = states
    assert not torch.equal(trained[0], initial[0])  # (both runs start from the same seeded weights)
    for ours, theirs in zip(timed, trained, strict=True):
        assert (ours == theirs) if isinstance(ours, int) else torch.equal(ours, theirs)


def test_the_bench_prints_each_phase_and_the_steps_ratio_to_the_floor() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "step_phases.py"), "--frames", str(FRAMES), "--epochs", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    phases = re.search(r"2 steps timed: inputs ([\d.]+), head ([\d.]+), loss ([\d.]+), loss backward ([\d.]+), "
                       r"head backward ([\d.]+), optimiser ([\d.]+) ms; step ([\d.]+) ms", lines[0])
    assert phases, lines[0]
    *parts, step = (float(value) for value in phases.groups())
    assert step == pytest.approx(sum(parts), abs=0.01 * len(parts))  # the step is its phases' sum
    assert lines[1] == f"native CPU kernels: {'on' if native.library() else 'OFF (PyTorch kernels)'}"
    last = re.fullmatch(r"probe step: ([\d.]+)x the memory-traffic floor \(([\d.]+) ms against ([\d.]+) ms: "
                        r"[\d.]+ GB/s memcpy\)", lines[-1])
    assert last and float(last[2]) == pytest.approx(step, abs=0.01), lines[-1]
    assert float(last[1]) == pytest.approx(float(last[2]) / float(last[3]), abs=0.06)
