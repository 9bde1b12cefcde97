"""Per-frame caches of frozen-network outputs (DINOv2 patch features, SAM image embeddings).

One array per (network weights, settings, frame store): every stored frame is pushed through the
frozen network once, in batches, and the outputs are kept fp16 and memory-mapped beside the frame
store, under the build-once rules of :mod:`lvseg.cachedir` (file lock, temporary folder, rename)::

    CACHE_DIR/<kind>-<key>/values.npy   float16 (V, 2, *shape), same order as the store's frames
    CACHE_DIR/<kind>-<key>/info.json    what the key is made of, timings
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lvseg.cachedir import INFO, build_once
from lvseg.framestore import FrameStore

CACHE_VERSION = 1
Compute = Callable[[np.ndarray], torch.Tensor]  # uint8 (B, H, W, 3) frames -> (B, *shape) outputs


def cache_path(kind: str, parts: list[Any], store: FrameStore) -> Path:
    key = hashlib.sha256(json.dumps([CACHE_VERSION, kind, *parts, store.hash]).encode()).hexdigest()[:20]
    return store.path.parent / f"{kind}-{key}"


def load_frame_cache(
    path: Path, store: FrameStore, shape: tuple[int, ...], make_compute: Callable[[], Compute],
    batch: int, label: str, info: dict[str, Any], progress: bool = True,
) -> np.ndarray:
    """float16 (V, 2, *shape) outputs for every stored frame; ``make_compute`` (which loads the
    network) is called only when the cache is cold, so a warm cache never builds the network."""
    build_once(path, lambda tmp: _build(tmp, store, shape, make_compute, batch, label, info, progress))
    return np.load(path / "values.npy", mmap_mode="r")


def _build(tmp: Path, store: FrameStore, shape: tuple[int, ...], make_compute: Callable[[], Compute],
           batch: int, label: str, info: dict[str, Any], progress: bool) -> None:
    started = time.perf_counter()
    compute = make_compute()
    frames = store.images.reshape(-1, *store.images.shape[2:])  # (V*2, H, W, 3), still memory-mapped
    out = np.lib.format.open_memmap(tmp / "values.npy", mode="w+", dtype=np.float16, shape=(len(store), 2, *shape))
    flat = out.reshape(len(frames), *shape)  # a view: rows in store order
    bar = dict(desc=label, unit="batch", disable=None if progress else True)
    for start in tqdm(range(0, len(frames), batch), **bar):
        values = compute(np.array(frames[start:start + batch]))
        flat[start:start + len(values)] = values.float().cpu().numpy().astype(np.float16)
    out.flush()
    info = {**info, "store": store.hash, "shape": [len(store), 2, *shape],
            "build_seconds": round(time.perf_counter() - started, 3)}
    (tmp / INFO).write_text(json.dumps(info, indent=1))
