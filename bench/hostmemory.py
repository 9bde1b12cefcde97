"""Freed pages kept (lvseg.hostmemory) against glibc's own settings: linear-probe epochs over
base-sized features (768 channels, 16x16, fp16) resident in memory, each setting in a process of
its own (the allocator's settings are the process's), the two alternated; the mean of the epochs
after the first, the median over the turns. The epochs are bench/resident.py's: the Trainer's own,
which keeps freed pages on a CPU; on the other side it is kept from doing so.

Synthetic features (random values), a linear head: speeds, not accuracies.

    .venv/bin/python bench/hostmemory.py [--frames 1024] [--turns 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import lvseg.train
from lvseg.hostmemory import keep_freed_pages
from lvseg.recipes.probe import ProbeConfig, feature_inputs

SETTINGS = ("kept", "glibc")


def epoch_in_a_process(setting: str, folder: str, frames: int) -> float:
    # the child's stderr comes through: where it fails, its error is what the user needs to see
    done = subprocess.run([sys.executable, __file__, "--frames", str(frames), "--child", setting, folder],
                          stdout=subprocess.PIPE, text=True, check=True)
    return float(done.stdout.split()[-1])


def child(setting: str, folder: Path, frames: int) -> None:
    import resident as resident_bench  # bench/resident.py, beside this script

    if setting == "glibc":  # the Trainer as it was: it leaves the allocator alone
        lvseg.train.keep_freed_pages = lambda: False
    elif not keep_freed_pages():
        raise SystemExit("this C library does not take glibc's mallopt settings: nothing to compare")
    inputs = feature_inputs(resident_bench.memmapped(folder), np.arange(frames), ProbeConfig(device="cpu"))
    print(resident_bench.later(resident_bench.epoch_seconds(inputs, frames)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1024, help="an even number: two per video")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("SETTING", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.frames)
        return
    import resident as resident_bench

    seconds: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="lvseg-hostmemory-") as folder:
        resident_bench.features_file(Path(folder), args.frames)
        for turn in range(args.turns):
            for setting in SETTINGS:
                seconds[setting].append(epoch_in_a_process(setting, folder, args.frames))
            print(f"turn {turn + 1}: probe epoch over {args.frames} frames, freed pages kept "
                  f"{seconds['kept'][-1]:.3f} s, glibc's settings {seconds['glibc'][-1]:.3f} s", flush=True)
    kept, glibc = (statistics.median(seconds[setting]) for setting in SETTINGS)
    print(f"freed pages kept: probe epoch {glibc / kept:.2f}x as fast ({kept:.3f} s against {glibc:.3f} s, "
          f"medians of {args.turns} turns, {torch.get_num_threads()} torch threads)")


if __name__ == "__main__":
    main()
