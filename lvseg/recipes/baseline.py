"""``baseline``: the EchoNet-Dynamic segmentation recipe (DeepLabV3 and friends, end to end).

Inputs are the traced frames normalised per channel by the train split's mean and std, as the
reference does; no augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lvseg.config import BaselineConfig
from lvseg.framestore import FrameStore
from lvseg.losses import channels
from lvseg.models.baseline import build_model
from lvseg.recipes.base import Recipe
from lvseg.train import SplitData

SPLITS = ("train", "val", "test")


def normalised_inputs(images: np.ndarray, mean: np.ndarray, std: np.ndarray):
    """``inputs(indices)`` for uint8 (N, H, W, 3) frames -> float (B, 3, H, W), (x - mean) / std."""
    mean_t = torch.from_numpy(mean).view(1, 3, 1, 1)
    std_t = torch.from_numpy(std).view(1, 3, 1, 1)

    def inputs(index: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images[index]).permute(0, 3, 1, 2).float()
        return (x - mean_t) / std_t

    return inputs


def split_data(data: FrameStore, split: str, inputs_for) -> SplitData:
    """A split's SplitData; ``inputs_for(frames, videos)`` makes its input function from the
    split's FrameSet and store video indices."""
    frames = data.frames(split)
    return SplitData(inputs=inputs_for(frames, data.video_indices(split)), masks=frames.masks,
                     phases=frames.phases, ef=frames.ef[0::2])


class BaselineRecipe(Recipe):
    def build(self, config: BaselineConfig, data: FrameStore) -> tuple[nn.Module, dict[str, SplitData]]:
        model = build_model(config.model, out_channels=channels(config.loss), backbone_weights=config.backbone_weights)
        splits = {s: split_data(data, s, lambda f, v: normalised_inputs(f.images, data.mean, data.std))
                  for s in SPLITS}
        return model, splits
