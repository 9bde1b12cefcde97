"""Frozen-feature cache: DINOv2 patch features of every stored frame, computed once.

A frozen backbone's features never change, so each (backbone weights, image size, layers, frame
store) is pushed through the backbone once and every trial after that trains only its head on the
cached features. Stored fp16, memory-mapped, beside the frame store::

    CACHE_DIR/features-<key>/features.npy   float16 (V, 2, C, h, w), same order as the store
    CACHE_DIR/features-<key>/info.json      what the key is made of, timings
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lvseg.cachedir import INFO, build_once
from lvseg.framestore import FrameStore
from lvseg.models import dinov2

FEATURES_VERSION = 1
EXTRACT_BATCH = 32  # frames per backbone call


def feature_key(backbone: str, image_size: int, layers: int, store: FrameStore) -> str:
    parts = [FEATURES_VERSION, dinov2.fingerprint(backbone), image_size, layers, store.hash]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def feature_path(backbone: str, image_size: int, layers: int, store: FrameStore) -> Path:
    return store.path.parent / f"features-{feature_key(backbone, image_size, layers, store)}"


def load_features(
    store: FrameStore, backbone: str, image_size: int, layers: int,
    device: torch.device | None = None, progress: bool = True,
) -> np.ndarray:
    """float16 (V, 2, C, h, w) features of every stored frame; computed here only if not cached.

    A warm cache never builds or runs the backbone.
    """
    path = feature_path(backbone, image_size, layers, store)
    device = device or torch.device("cpu")
    build_once(path, lambda tmp: _build(tmp, store, backbone, image_size, layers, device, progress))
    return np.load(path / "features.npy", mmap_mode="r")


def _build(tmp: Path, store: FrameStore, backbone: str, image_size: int, layers: int,
           device: torch.device, progress: bool) -> None:
    started = time.perf_counter()
    model = dinov2.load_backbone(backbone).to(device)
    frames = store.images.reshape(-1, *store.images.shape[2:])  # (V*2, H, W, 3), still memory-mapped
    channels, grid_h, grid_w = dinov2.feature_shape(backbone, image_size, layers)
    out = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float16,
                                    shape=(len(store), 2, channels, grid_h, grid_w))
    flat = out.reshape(len(frames), channels, grid_h, grid_w)  # a view: rows in store order
    starts = range(0, len(frames), EXTRACT_BATCH)
    bar = dict(desc=f"DINOv2 features ({dinov2.describe(backbone)})", unit="batch",
               disable=None if progress else True)
    for start in tqdm(starts, **bar):
        batch = dinov2.as_uint8_batch(frames[start:start + EXTRACT_BATCH], device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            features = dinov2.patch_features(model, batch, image_size, layers)
        flat[start:start + len(batch)] = features.float().cpu().numpy().astype(np.float16)
    out.flush()
    info = dict(version=FEATURES_VERSION, backbone=dinov2.describe(backbone), image_size=image_size,
                layers=layers, store=store.hash, shape=[len(store), 2, channels, grid_h, grid_w],
                build_seconds=round(time.perf_counter() - started, 3))
    (tmp / INFO).write_text(json.dumps(info, indent=1))
