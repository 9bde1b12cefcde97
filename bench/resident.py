"""Device-resident inputs (lvseg.resident), measured on this machine's device (the CPU here):

1. a warm worker's second probe trial against its first: the first copies the split's cached
   features into memory, the second is served what the first kept (no cache I/O);
2. probe-head epochs over base-sized features (768 channels, 16x16, fp16) resident, against this
   machine's memory-traffic floor (the bytes an epoch reads / measured memcpy bandwidth): the mean
   of the epochs after the first (what most of a trial's epochs take), and the first; the same
   epochs streamed from the memmap; and, side by side with the resident ones (in turns, the
   better of two turns each: this VM's speed drifts), the same epochs on PyTorch's kernels (where
   the native ones, lvseg.native, cannot be built: each batch gathered, the loss on upsampled
   logits), and given float32 copies of the batches, as the linear head was before it took the
   fp16 rows (lvseg.models.halflinear).

Synthetic features (random values), a linear head: speeds, not accuracies.

    .venv/bin/python bench/resident.py [--frames 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import memcpy_gb_s, probe_epochs, pytorch_kernels

from lvseg import native
from lvseg.recipes.probe import ProbeConfig, feature_inputs
from lvseg.resident import KEPT, BatchSlots, rows_of

CHANNELS, GRID, BATCH = 768, 16, 64  # DINOv2-base at 224 px, one layer
EPOCHS = 3  # the first, and two after it
TURNS = 2  # resident epochs as fp16 rows and as float32 copies, in turns
DEVICE = torch.device("cpu")


def features_file(folder: Path, frames: int) -> None:
    path = folder / "values.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(frames, CHANNELS, GRID, GRID))
    rng = np.random.default_rng(0)
    for start in range(0, frames, 256):
        out[start:start + 256] = rng.standard_normal((min(256, frames - start), CHANNELS, GRID, GRID))
    out.flush()


def epoch_seconds(inputs, frames: int, epochs: int = EPOCHS) -> list[float]:
    """Seconds of each of ``epochs`` of the Trainer's own linear-probe epochs (benchlib) over inputs
    made by the probe recipe's own ``feature_inputs``; the Trainer reads a streamed split's batches
    one ahead in a thread. bench/gpu.py times the same epochs on a GPU."""
    return probe_epochs(inputs, frames, CHANNELS, BATCH, DEVICE, epochs)


def memmapped(folder: Path) -> np.ndarray:
    """The cache as the probe recipe reads it: (videos, 2 phases, C, h, w), memmapped."""
    return np.load(folder / "values.npy", mmap_mode="r").reshape(-1, 2, CHANNELS, GRID, GRID)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="an even number: two per video")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    resident, streamed = ProbeConfig(device=DEVICE.type), ProbeConfig(device=DEVICE.type, resident_gb=0)
    with tempfile.TemporaryDirectory(prefix="lvseg-resident-") as folder:
        features_file(Path(folder), args.frames)
        rows = np.arange(args.frames)
        KEPT.clear()
        started = time.perf_counter()
        feature_inputs(memmapped(Path(folder)), rows, resident)
        first_s = time.perf_counter() - started
        (kept,) = KEPT.tensors.values()
        started = time.perf_counter()
        second = feature_inputs(memmapped(Path(folder)), rows, resident)
        second_s = time.perf_counter() - started
        # the second was served the very tensor the first kept (a copy made again would replace it)
        (again,) = KEPT.tensors.values()
        assert not second.streamed and again is kept
        with pytorch_kernels():
            copies = float32_copies(memmapped(Path(folder)), rows)
            fallback = feature_inputs(memmapped(Path(folder)), rows, resident)
        turns = [(epoch_seconds(second, args.frames), torch_epoch_seconds(fallback, args.frames),
                  torch_epoch_seconds(copies, args.frames)) for _ in range(TURNS)]
        resident_s, fallback_s, copies_s = (min(runs, key=later) for runs in zip(*turns, strict=True))
        streamed_s = epoch_seconds(feature_inputs(memmapped(Path(folder)), rows, streamed), args.frames)
    bandwidth = memcpy_gb_s()
    read = args.frames * CHANNELS * GRID * GRID * 2
    floor = read / (bandwidth * 1e9)
    print(f"inputs for {args.frames} frames ({read / 1e9:.2f} GB fp16): first trial {first_s:.3f} s "
          f"(copied from the cache), second trial {second_s * 1e3:.3f} ms (kept: no cache I/O)")
    print(f"native CPU kernels: {'on' if native.library() else 'OFF (PyTorch kernels throughout)'}")
    print(f"probe epochs: resident {seconds(resident_s)}, on PyTorch's kernels {seconds(fallback_s)}, as float32 "
          f"copies {seconds(copies_s)}, streamed {seconds(streamed_s)}; memory-traffic floor {floor:.3f} s "
          f"({bandwidth:.1f} GB/s memcpy)")
    print(f"resident: second trial's inputs {first_s / max(second_s, 1e-9):.0f}x faster; probe epoch "
          f"{later(resident_s) / floor:.1f}x the memory-traffic floor (first epoch {resident_s[0] / floor:.1f}x; "
          f"{later(fallback_s) / floor:.1f}x on PyTorch's kernels, {later(copies_s) / floor:.1f}x with float32 copies)")


def torch_epoch_seconds(inputs, frames: int) -> list[float]:
    with pytorch_kernels():
        return epoch_seconds(inputs, frames)


def float32_copies(features: np.ndarray, rows: np.ndarray):
    """The resident split's batches cast to float32 in one reused slot: the linear head's inputs
    before it took fp16 rows (the other heads' still)."""
    source = rows_of(features.reshape(-1, CHANNELS, GRID, GRID), rows, DEVICE, None, channels_last=True)
    slot = BatchSlots(1, torch.float32)

    def inputs(index: np.ndarray) -> torch.Tensor:
        return slot(source, index)

    inputs.streamed = False
    return inputs


def later(epochs: list[float]) -> float:
    """The mean of the epochs after the first: what most of a trial's epochs take."""
    return sum(epochs[1:]) / len(epochs[1:])


def seconds(epochs: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in epochs) + " s"


if __name__ == "__main__":
    main()
