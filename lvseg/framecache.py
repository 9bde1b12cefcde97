"""Per-frame caches of frozen-network outputs (DINOv2 patch features, SAM image embeddings).

One array per (network weights, settings, frame store): every stored frame is pushed through the
frozen network once, in batches, and the outputs are kept fp16 and memory-mapped beside the frame
store, under the build-once rules of :mod:`lvseg.cachedir` (file lock, temporary folder, rename,
checked on every open)::

    CACHE_DIR/<kind>-<key>/values.npy   float16 (V, 2, *shape), same order as the store's frames
    CACHE_DIR/<kind>-<key>/info.json    what the key is made of, timings, file checksums

A :class:`FrameCache` says where a cache lives and how many bytes it takes before it is built, so
that a search can build every cache it needs up front and refuse one that would not fit on disk.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lvseg.cachedir import INFO, build_once, is_built
from lvseg.framestore import FrameStore

CACHE_VERSION = 1
Compute = Callable[[np.ndarray], torch.Tensor]  # uint8 (B, H, W, 3) frames -> (B, *shape) outputs
VALUE_BYTES = 2  # float16


def cache_path(kind: str, parts: list[Any], store: FrameStore) -> Path:
    key = hashlib.sha256(json.dumps([CACHE_VERSION, kind, *parts, store.hash]).encode()).hexdigest()[:20]
    return store.path.parent / f"{kind}-{key}"


def cache_bytes(frames: int, shape: tuple[int, ...]) -> int:
    """Bytes of a cache of ``frames`` outputs of ``shape`` (its values.npy, header aside)."""
    return frames * math.prod(shape) * VALUE_BYTES


@dataclass(frozen=True)
class FrameCache:
    """One frozen network's outputs for every frame of ``store``. ``make_compute`` loads the
    network: it is called only when the cache is cold, so a warm cache never builds it."""

    path: Path
    store: FrameStore
    shape: tuple[int, ...]
    make_compute: Callable[[], Compute] = field(repr=False)
    batch: int
    label: str
    info: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return cache_bytes(2 * len(self.store), self.shape)

    @property
    def built(self) -> bool:
        return is_built(self.path)

    def load(self, progress: bool = True) -> np.ndarray:
        """float16 (V, 2, *shape) outputs for every stored frame, built first if needed."""
        build_once(self.path, lambda tmp: self._build(tmp, progress))
        return np.load(self.path / "values.npy", mmap_mode="r")

    def _build(self, tmp: Path, progress: bool) -> None:
        started = time.perf_counter()
        compute = self.make_compute()
        store = self.store
        frames = store.images.reshape(-1, *store.images.shape[2:])  # (V*2, H, W, 3), still memory-mapped
        out = np.lib.format.open_memmap(tmp / "values.npy", mode="w+", dtype=np.float16,
                                        shape=(len(store), 2, *self.shape))
        flat = out.reshape(len(frames), *self.shape)  # a view: rows in store order
        bar = dict(desc=self.label, unit="batch", disable=None if progress else True)
        for start in tqdm(range(0, len(frames), self.batch), **bar):
            values = compute(np.array(frames[start:start + self.batch]))
            flat[start:start + len(values)] = values.float().cpu().numpy().astype(np.float16)
        out.flush()
        info = {**self.info, "store": store.hash, "shape": [len(store), 2, *self.shape],
                "build_seconds": round(time.perf_counter() - started, 3)}
        (tmp / INFO).write_text(json.dumps(info, indent=1))
