"""Frozen-feature cache: DINOv2 patch features of every stored frame, computed once.

A frozen backbone's features never change, so each (backbone weights, image size, layers, frame
store) is pushed through the backbone once (:mod:`lvseg.framecache`) and every trial after that
trains only its head on the cached, memory-mapped fp16 features.
"""

from __future__ import annotations

import numpy as np
import torch

from lvseg.framecache import FrameCache, cache_path
from lvseg.framestore import FrameStore
from lvseg.models import dinov2
from lvseg.train import autocast

EXTRACT_BATCH = 32  # frames per backbone call


def feature_cache(store: FrameStore, backbone: str, image_size: int, layers: int,
                  device: torch.device | None = None) -> FrameCache:
    """Where the features live and what they weigh; ``.load()`` builds them if cold."""
    device = device or torch.device("cpu")

    def make_compute():
        model = dinov2.load_backbone(backbone).to(device)

        def compute(frames: np.ndarray) -> torch.Tensor:
            batch = dinov2.as_uint8_batch(frames, device)
            with autocast(device):
                return dinov2.patch_features(model, batch, image_size, layers)

        return compute

    return FrameCache(
        cache_path("features", [dinov2.fingerprint(backbone), image_size, layers], store), store,
        dinov2.feature_shape(backbone, image_size, layers), make_compute, EXTRACT_BATCH,
        f"DINOv2 features ({dinov2.describe(backbone)})",
        {"backbone": dinov2.describe(backbone), "image_size": image_size, "layers": layers})


def load_features(store: FrameStore, backbone: str, image_size: int, layers: int,
                  device: torch.device | None = None, progress: bool = True) -> np.ndarray:
    """float16 (V, 2, C, h, w) features of every stored frame; computed here only if not cached.
    A warm cache never builds or runs the backbone."""
    return feature_cache(store, backbone, image_size, layers, device).load(progress)
