"""The frame store's decoding pass: one read of each AVI, in parallel processes.

Kept apart from :mod:`lvseg.framestore` so that worker processes import only what decoding needs.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lvseg.echonet import VIDEOS, TracedVideo, trace_mask
from lvseg.video import read_video

SERIAL_BELOW = 16  # videos; fewer than this decode in-process (a pool costs ~1 s to start)


@dataclass(frozen=True)
class Decoded:
    """One video's traced frames: ``images`` uint8 (2, H, W, 3) ES/ED, ``masks`` bool (2, H, W);
    ``sums``/``squares`` float64 (3,) per-channel sums over *all* its frames, ``pixels`` their count."""

    images: np.ndarray
    masks: np.ndarray
    frames: int
    sums: np.ndarray
    squares: np.ndarray
    pixels: int


def decode_one(root: Path, video: TracedVideo) -> Decoded | str:
    """Decode one video; a problem comes back as a one-line reason instead of raising, so that
    one corrupt file does not lose the work done on the others."""
    path = root / VIDEOS / f"{video.video}.avi"
    try:
        frames = read_video(path)
    except (OSError, ValueError) as error:
        return f"does not decode: {error}"
    last = max(video.es_frame, video.ed_frame)
    if last >= len(frames):
        return f"traced frame {last} is past the end of the video ({len(frames)} frames)"
    height, width = frames.shape[1:3]
    try:
        masks = np.stack([trace_mask(video.es, height, width), trace_mask(video.ed, height, width)])
    except ValueError as error:
        return f"bad tracing: {error}"
    flat = frames.reshape(-1, 3).astype(np.float64)
    return Decoded(
        images=frames[[video.es_frame, video.ed_frame]],
        masks=masks,
        frames=len(frames),
        sums=flat.sum(axis=0),
        squares=(flat**2).sum(axis=0),
        pixels=len(flat),
    )


def _decode_star(args: tuple[Path, TracedVideo]) -> Decoded | str:
    return decode_one(*args)


def decode_all(
    root: Path, videos: list[TracedVideo], workers: int | None, progress: bool
) -> list[Decoded | str]:
    """Decode every video, in order; parallel across ``workers`` processes (default: all CPUs)."""
    workers = workers or os.cpu_count() or 1
    jobs = [(root, v) for v in videos]
    # disable=None: a bar on a terminal, silence in logs and CI; disable=True: never
    bar = dict(total=len(jobs), desc="decoding videos", unit="video", disable=None if progress else True)
    if workers == 1 or len(jobs) < SERIAL_BELOW:
        return [decode_one(*job) for job in tqdm(jobs, **bar)]
    # forkserver: the caller may hold threads (torch, Ray) that plain fork would copy mid-lock
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        chunk = max(1, len(jobs) // (workers * 8))
        return list(tqdm(pool.map(_decode_star, jobs, chunksize=chunk), **bar))


def mismatched_sizes(good: list[tuple[TracedVideo, Decoded]]) -> dict[str, str]:
    """Videos whose frame size differs from the most common one (a store holds one size)."""
    sizes = [r.images.shape[1:3] for _, r in good]
    if not sizes:
        return {}
    common = max(set(sizes), key=sizes.count)
    return {
        v.video: f"frame size {r.images.shape[1]}x{r.images.shape[2]} differs from the folder's "
                 f"{common[0]}x{common[1]}"
        for v, r in good if r.images.shape[1:3] != common
    }


def write_arrays(folder: Path, good: list[tuple[TracedVideo, Decoded]]) -> None:
    """Write images/masks/tracings .npy and videos.csv for the decoded videos, in order."""
    np.save(folder / "images.npy", np.stack([r.images for _, r in good]))
    np.save(folder / "masks.npy", np.stack([r.masks for _, r in good]))
    rows = max(max(len(v.es), len(v.ed)) for v, _ in good)
    tracings = np.full((len(good), 2, rows, 4), np.nan, dtype=np.float32)
    for i, (v, _) in enumerate(good):
        tracings[i, 0, : len(v.es)] = v.es
        tracings[i, 1, : len(v.ed)] = v.ed
    np.save(folder / "tracings.npy", tracings)
    pd.DataFrame([
        dict(video=v.video, split=v.split, ef=v.ef, esv=v.esv, edv=v.edv, es_frame=v.es_frame,
             ed_frame=v.ed_frame, frames=r.frames, rows_es=len(v.es), rows_ed=len(v.ed))
        for v, r in good
    ]).to_csv(folder / "videos.csv", index=False)


def channel_stats(decoded: list[Decoded]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..255) over every frame of the given videos.

    The reference estimates these from a sample of train videos; we use all of them. With no
    train video (a tiny folder) the statistics are (0, 1): normalisation then does nothing.
    """
    pixels = sum(r.pixels for r in decoded)
    if pixels == 0:
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    mean = sum(r.sums for r in decoded) / pixels
    var = sum(r.squares for r in decoded) / pixels - mean**2
    return mean.round(6).tolist(), np.sqrt(np.maximum(var, 1e-12)).round(6).tolist()
