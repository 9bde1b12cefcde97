"""``dinov2_probe``: a frozen DINOv2 backbone with a trained head, on cached patch features.

The backbone never runs during training: its features of every stored frame are computed once
(lvseg.features) and each trial trains only the head on them."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lvseg.config import ProbeConfig
from lvseg.features import load_features
from lvseg.framestore import FrameStore
from lvseg.losses import channels
from lvseg.models.heads import build_probe
from lvseg.recipes.base import Recipe
from lvseg.recipes.baseline import SPLITS, split_data
from lvseg.train import SplitData, pick_device


def feature_inputs(features: np.ndarray, videos: np.ndarray):
    """``inputs(indices)`` over the split's samples -> float (B, C, h, w) from the fp16 cache."""
    flat = features.reshape(-1, *features.shape[2:])  # (V*2, C, h, w) in store order
    rows = np.stack([2 * videos, 2 * videos + 1], axis=1).reshape(-1)

    def inputs(index: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(flat[rows[index]], dtype=np.float32))

    return inputs


class ProbeRecipe(Recipe):
    def build(self, config: ProbeConfig, data: FrameStore) -> tuple[nn.Module, dict[str, SplitData]]:
        features = load_features(data, config.backbone, config.image_size, config.layers,
                                 device=pick_device(config.device))
        mask_size = tuple(data.masks.shape[2:4])
        model = build_probe(config.head, channels=features.shape[2], out=channels(config.loss), mask_size=mask_size)
        return model, {s: split_data(data, s, lambda f, v: feature_inputs(features, v)) for s in SPLITS}
