"""Frame store: every traced ES/ED frame decoded once, memory-mapped after.

The reference decodes a whole AVI each time it needs one traced frame. The store decodes each
video once (in parallel), keeps its two traced frames, their masks and tracings, per-video
metadata and the train split's per-channel mean/std, and is read with ``numpy.load(mmap_mode="r")``.

On disk (``CACHE_DIR/framestore-<source hash>/``)::

    images.npy    uint8 (V, 2, H, W, 3) RGB; axis 1 is the phase, 0 = ES, 1 = ED
    masks.npy     bool  (V, 2, H, W), True = LV
    tracings.npy  float32 (V, 2, R, 4) X1,Y1,X2,Y2 rows, long axis first, NaN-padded to R rows
    videos.csv    video, split, ef, esv, edv, es_frame, ed_frame, frames, rows_es, rows_ed
    info.json     source hash and folder, mean/std, excluded videos with reasons, timings

The key is a hash of both CSVs' bytes and the AVIs' names and sizes: an unchanged folder is never
decoded twice and a changed one gets a new store. A store is built in a temporary folder and
renamed into place under a file lock, so readers never see half a store and concurrent builders
build once. Videos that fail to decode are recorded as problems in the store, so that the work on
the others is kept even when opening it without ``allow_missing`` then raises.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lvseg import decode
from lvseg.cachedir import INFO, build_once
from lvseg.echonet import (
    FILELIST,
    TRACINGS,
    VIDEOS,
    DataFormatError,
    find_missing_videos,
    missing_videos_message,
    normalise_split,
    traced_videos,
)

STORE_VERSION = 1
SYNTHETIC_MARKER = "SYNTHETIC.txt"  # written by lvseg.synth beside FileList.csv
CACHE_ENV = "LVSEG_CACHE_DIR"
LISTED = 5


def default_cache_dir() -> Path:
    """``$LVSEG_CACHE_DIR`` if set, else ``~/.cache/lvseg``: the one place this default lives."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lvseg")


def source_hash(root: str | Path) -> str:
    """Content key of an EchoNet folder: both CSVs' bytes and every AVI's name and size."""
    root = Path(root)
    digest = hashlib.sha256(f"framestore-v{STORE_VERSION}".encode())
    for name in (FILELIST, TRACINGS):
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (an EchoNet-Dynamic folder needs it)")
        digest.update(path.read_bytes())
    videos = root / VIDEOS
    entries = sorted((p.name, p.stat().st_size) for p in videos.glob("*")) if videos.is_dir() else []
    digest.update(json.dumps(entries).encode())
    return digest.hexdigest()[:20]


@dataclass(frozen=True)
class FrameSet:
    """The traced frames of one split, flattened: 2 samples per video, ES then ED.

    ``images`` uint8 (N, H, W, 3) RGB, ``masks`` bool (N, H, W), ``videos`` str (N,),
    ``phases`` "ES"/"ED" (N,), ``ef`` float (N,) of the sample's video.
    """

    images: np.ndarray
    masks: np.ndarray
    videos: np.ndarray
    phases: np.ndarray
    ef: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


class FrameStore:
    """A built store, memory-mapped. Build or find one with :func:`load_store`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        info_path = self.path / INFO
        if not info_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a frame store (no info.json)")
        self.info = json.loads(info_path.read_text())
        self.images = np.load(self.path / "images.npy", mmap_mode="r")
        self.masks = np.load(self.path / "masks.npy", mmap_mode="r")
        self.tracings = np.load(self.path / "tracings.npy", mmap_mode="r")
        self.table = pd.read_csv(self.path / "videos.csv", dtype={"video": str, "split": str})

    @property
    def hash(self) -> str:
        return self.info["source_hash"]

    @property
    def mean(self) -> np.ndarray:
        """Per-channel (R, G, B) mean of the train split's pixels, 0..255."""
        return np.asarray(self.info["mean"], dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.info["std"], dtype=np.float32)

    @property
    def excluded(self) -> dict[str, str]:
        """Every listed video that is not in the store, with the reason."""
        return {**self.info["excluded"], **self.info["problems"]}

    def __len__(self) -> int:
        return len(self.table)

    def video_indices(self, split: str) -> np.ndarray:
        split = normalise_split(split)
        chosen = np.ones(len(self.table), bool) if split == "all" else self.table["split"] == split
        return np.flatnonzero(chosen)

    def frames(self, split: str) -> FrameSet:
        """The split's traced frames read into memory (ES then ED for each video)."""
        index = self.video_indices(split)
        height, width = self.images.shape[2:4]
        table = self.table.iloc[index]
        return FrameSet(
            images=np.asarray(self.images[index]).reshape(-1, height, width, 3),
            masks=np.asarray(self.masks[index]).reshape(-1, height, width),
            videos=np.repeat(table["video"].to_numpy(), 2),
            phases=np.tile(np.array(["ES", "ED"]), len(index)),
            ef=np.repeat(table["ef"].to_numpy(dtype=np.float64), 2),
        )

    def summary(self) -> str:
        counts = self.table["split"].value_counts()
        lines = [
            f"frame store {self.path}",
            f"  source   {self.info['root']} (hash {self.hash})",
            f"  videos   {len(self)}: "
            + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("train", "val", "test")),
            f"  frames   {2 * len(self)} traced frames of {self.images.shape[2]}x{self.images.shape[3]}",
            f"  mean/std {_rgb(self.mean)} / {_rgb(self.std)} (train split, RGB, 0-255)",
        ]
        excluded = self.excluded
        if excluded:
            lines.append(f"  excluded {len(excluded)} video(s):")
            lines += [f"    {name}: {why}" for name, why in list(excluded.items())[:LISTED]]
            if len(excluded) > LISTED:
                lines.append(f"    ... and {len(excluded) - LISTED} more (info.json lists all)")
        return "\n".join(lines)


def _rgb(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


def load_store(
    root: str | Path,
    cache_dir: str | Path | None = None,
    allow_missing: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> FrameStore:
    """The frame store of the EchoNet folder ``root``, built first if this content has none.

    Missing videos raise FileNotFoundError before any decoding, unless ``allow_missing``. Videos
    that fail to decode are kept out of the store and raise DataFormatError (listing them all)
    unless ``allow_missing``; the frames decoded from the other videos are kept either way.
    """
    root = Path(root)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = source_hash(root)
    path = cache_dir / f"framestore-{key}"
    build_once(path, lambda tmp: _build(root, tmp, key, allow_missing, workers, progress))
    store = FrameStore(path)
    _check_problems(store, root, allow_missing)
    return store


def _check_problems(store: FrameStore, root: Path, allow_missing: bool) -> None:
    problems = store.info["problems"]
    if not problems or allow_missing:
        return
    missing = [name for name, why in problems.items() if why.startswith("video file")]
    if missing:
        raise FileNotFoundError(missing_videos_message(root, missing))
    listed = "; ".join(f"{n}: {why}" for n, why in list(problems.items())[:LISTED])
    raise DataFormatError(
        f"{len(problems)} video(s) in {root / VIDEOS} could not be used: {listed}"
        f"{' ...' if len(problems) > LISTED else ''}. The other {len(store)} videos are decoded "
        f"and stored in {store.path}; pass allow_missing=True / --allow-missing to use them."
    )


def _build(root: Path, tmp: Path, key: str, allow_missing: bool, workers: int | None, progress: bool) -> None:
    started = time.perf_counter()
    videos, excluded = traced_videos(root, "all")
    missing = find_missing_videos(root, videos)
    if missing and not allow_missing:
        raise FileNotFoundError(missing_videos_message(root, missing))
    problems = {name: f"video file {VIDEOS}/{name}.avi is missing" for name in missing}
    videos = [v for v in videos if v.video not in problems]
    results = decode.decode_all(root, videos, workers, progress)
    problems.update({v.video: r for v, r in zip(videos, results, strict=True) if isinstance(r, str)})
    good = [(v, r) for v, r in zip(videos, results, strict=True) if not isinstance(r, str)]
    problems.update(decode.mismatched_sizes(good))
    good = [(v, r) for v, r in good if v.video not in problems]
    if not good:
        raise DataFormatError(f"{root}: no usable traced video ({len(problems)} problem(s): "
                              f"{'; '.join(list(problems.values())[:LISTED])})")
    decode.write_arrays(tmp, good)
    mean, std = decode.channel_stats([r for v, r in good if v.split == "train"])
    info = {
        "version": STORE_VERSION, "source_hash": key,
        "root": str(root.resolve()), "mean": mean, "std": std,
        "excluded": excluded, "problems": problems, "synthetic": (root / SYNTHETIC_MARKER).is_file(),
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    (tmp / INFO).write_text(json.dumps(info, indent=1))
