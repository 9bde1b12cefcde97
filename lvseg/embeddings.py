"""SAM image-embedding cache: every stored frame through the image encoder once.

Keyed by (model, checkpoint hash, frame store); fp16, memory-mapped, file-locked and atomic like
the DINOv2 feature cache (:mod:`lvseg.framecache`). A warm cache never builds or runs the encoder.
"""

from __future__ import annotations

import numpy as np
import torch

from lvseg.framecache import FrameCache, cache_path
from lvseg.framestore import FrameStore
from lvseg.models import sam as sam_models

EMBED_BATCH = 4  # frames per encoder call (vit_h at 1024 px is memory-hungry)


def embedding_cache(store: FrameStore, model: str, checkpoint: str | None,
                    device: torch.device | None = None) -> FrameCache:
    """Where the embeddings live and what they weigh; ``.load()`` builds them if cold."""
    device = device or torch.device("cpu")

    def make_compute():
        sam = sam_models.build_sam(model, checkpoint).to(device)
        return lambda frames: sam_models.embed(sam, frames)

    return FrameCache(
        cache_path("sam-embeddings", [sam_models.fingerprint(model, checkpoint)], store), store,
        sam_models.embedding_shape(model), make_compute, EMBED_BATCH, f"SAM embeddings ({sam_models.describe(model)})",
        {"model": sam_models.describe(model), "checkpoint": checkpoint})


def load_embeddings(store: FrameStore, model: str, checkpoint: str | None, device: torch.device | None = None,
                    progress: bool = True) -> np.ndarray:
    """float16 (V, 2, C, h, w) image embeddings of every stored frame (ES, ED)."""
    return embedding_cache(store, model, checkpoint, device).load(progress)
