"""Where a linear-probe training step's time goes on this machine's CPU: the Trainer's own pieces
timed apart (the batch's inputs, the head's logits on the patch grid, the loss of those upsampled
to mask size with the masks' gather, the backward pass to the patch grid's logits, then through the
head, the optimiser's step), over base-sized features (768 channels, 16x16, fp16), against the
step's memory-traffic floor (the features' bytes it reads / measured memcpy bandwidth, as
bench/resident.py counts an epoch's). With the native kernels (lvseg.nativeops) the head reads the
resident rows where they lie, so "inputs" is only the index, and the loss never makes the
mask-sized logits; without them (``LVSEG_NATIVE=0``) "inputs" gathers and casts the batch and the
loss upsamples first. (On a GPU, bench/gpu.py times the whole epoch.)

Synthetic features (random values), a linear head: speeds, not accuracies.

    .venv/bin/python bench/step_phases.py [--frames 2000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from benchlib import memcpy_gb_s, probe_trainer

from lvseg import native
from lvseg.recipes.probe import ProbeConfig, feature_inputs
from lvseg.train import Trainer

CHANNELS, GRID, BATCH = 768, 16, 64  # DINOv2-base at 224 px, one layer; the bench/resident.py batch
PHASES = ("inputs", "head", "loss", "loss backward", "head backward", "optimiser")
DEVICE = torch.device("cpu")


def phase_seconds(trainer: Trainer, epoch: int) -> np.ndarray:
    """Summed seconds of each of PHASES over one epoch of the Trainer's steps (its seeded order,
    its grid loss and optimiser: the same training as ``trainer.train_epoch(epoch)``), and the
    number of steps (last)."""
    if trainer.grid_loss is None:
        raise ValueError(f"step_phases times a probe's grid loss; the {trainer.config.loss} loss has none")
    trainer.model.train()
    order = np.random.default_rng([trainer.config.seed, epoch]).permutation(trainer.train.videos)
    totals, steps = np.zeros(len(PHASES)), 0
    for index in trainer.train.batches(trainer.config.batch_size, order):
        marks = [time.perf_counter()]
        x = trainer.train.inputs(index)
        marks.append(time.perf_counter())
        patches = trainer._forward(x, trainer.model.patch_logits)
        marks.append(time.perf_counter())
        # the backward pass in two: to the head's logits on the patch grid, then through the head
        grid = patches.detach().requires_grad_()
        loss = trainer._halved(trainer.grid_loss(grid, trainer._masks(trainer.train, index)))
        marks.append(time.perf_counter())
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        patches.backward(grid.grad)
        marks.append(time.perf_counter())
        trainer.optimizer.step()
        marks.append(time.perf_counter())
        totals += np.diff(marks)
        steps += 1
    trainer.scheduler.step()  # as the Trainer ends an epoch
    return np.append(totals, steps)


def random_features(frames: int) -> np.ndarray:
    """(videos, 2 phases, C, h, w) fp16 normal values, drawn a video at a time (no float32 copy of
    the whole set)."""
    features = np.empty((frames // 2, 2, CHANNELS, GRID, GRID), np.float16)
    rng = np.random.default_rng(0)
    for video in features:
        video[...] = rng.standard_normal(video.shape, np.float32)
    return features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="an even number: two per video")
    parser.add_argument("--epochs", type=int, default=3, help="timed after one untimed epoch")
    args = parser.parse_args()
    inputs = feature_inputs(random_features(args.frames), np.arange(args.frames), ProbeConfig(device=DEVICE.type))
    with probe_trainer(inputs, args.frames, CHANNELS, BATCH, DEVICE, args.epochs + 2) as trainer:
        # untimed: what a trial makes once (batch slots, the optimiser's state, the masks' copy), and
        # the first backward pass from the patch grid's logits, which alone took ~0.28 s (PyTorch's kernels)
        phase_seconds(trainer, 0)
        *totals, steps = sum(phase_seconds(trainer, epoch) for epoch in range(1, args.epochs + 1))
        started = time.perf_counter()
        trainer.train_epoch(args.epochs + 1)  # the same steps untimed: the phases' sum should be close
        whole_ms = (time.perf_counter() - started) / (steps / args.epochs) * 1e3
    per_step = dict(zip(PHASES, np.array(totals) / steps * 1e3, strict=True))
    bandwidth = memcpy_gb_s()
    floor_ms = BATCH * CHANNELS * GRID * GRID * 2 / (bandwidth * 1e9) * 1e3
    step_ms = sum(per_step.values())
    phases = ", ".join(f"{phase} {ms:.2f}" for phase, ms in per_step.items())
    print(f"probe step, {BATCH} base-sized frames resident of {args.frames:,}, {int(steps)} steps timed: {phases} ms; "
          f"step {step_ms:.2f} ms (the Trainer's own epoch: {whole_ms:.2f} ms a step)")
    print(f"native CPU kernels: {'on' if native.library() else 'OFF (PyTorch kernels)'}")
    print(f"probe step: {step_ms / floor_ms:.1f}x the memory-traffic floor "
          f"({step_ms:.2f} ms against {floor_ms:.2f} ms: {bandwidth:.1f} GB/s memcpy)")

if __name__ == "__main__":
    main()
