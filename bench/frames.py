"""Frame store speed-up: serve every traced frame of a synthetic 200-video folder two ways.

1. reference-style: decode the whole AVI for each traced frame (what echonet/dynamic does);
2. from the frame store: memory-mapped arrays, decoded once (build time reported separately).

Both read the same frames and masks; the script checks that they are equal. Videos are as long
as EchoNet-Dynamic's on average (100-250 frames, mean ~175: `lvseg synth --frames`); `--frames
40:56` gives the generator's short default, as measured before 2026-12-01.

    python bench/frames.py [--videos 200] [--frames 100:250]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from lvseg.cli import frame_range
from lvseg.echonet import EchoNet
from lvseg.framestore import load_store
from lvseg.synth import ECHONET_FRAMES, write_synthetic


def serve_reference(root: Path) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    total = np.zeros(3)
    for sample in EchoNet(root, "all"):
        total += (sample.image.sum(), sample.mask.sum(), 1)
    return time.perf_counter() - started, total


def serve_store(root: Path, cache: Path) -> tuple[float, np.ndarray]:
    store = load_store(root, cache, progress=False)  # already built: this opens the memory maps
    started = time.perf_counter()
    total = np.zeros(3)
    for video in range(len(store)):
        for phase in range(2):
            image, mask = np.asarray(store.images[video, phase]), np.asarray(store.masks[video, phase])
            total += (image.sum(), mask.sum(), 1)
    return time.perf_counter() - started, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--frames", type=frame_range, default=ECHONET_FRAMES, metavar="MIN:MAX",
                        help="frames per synthetic video, drawn uniformly")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "echonet", Path(tmp) / "cache"
        started = time.perf_counter()
        write_synthetic(root, videos=args.videos, seed=0, frames=args.frames)
        print(f"synthetic folder: {args.videos} videos of {args.frames[0]}-{args.frames[1]} frames in "
              f"{time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        store = load_store(root, cache, progress=False)
        print(f"frame store build (one decode of every video, all CPUs): {time.perf_counter() - started:.2f} s")
        reference_s, reference_sum = serve_reference(root)
        store_s, store_sum = serve_store(root, cache)
        if not np.array_equal(reference_sum, store_sum):
            raise SystemExit(f"frames differ: reference {reference_sum} vs store {store_sum}")
        frames = 2 * len(store)
        print(f"reference-style (decode per sample): {reference_s:.3f} s for {frames} frames "
              f"({1000 * reference_s / frames:.2f} ms/frame)")
        print(f"frame store (memory-mapped):         {store_s:.4f} s for {frames} frames "
              f"({1e6 * store_s / frames:.1f} us/frame)")
        print(f"build + one pass from the store vs one reference pass: "
              f"{reference_s / (store.info['build_seconds'] + store_s):.1f}x")
        print(f"frame store speed-up: {reference_s / store_s:.1f}x")


if __name__ == "__main__":
    main()
