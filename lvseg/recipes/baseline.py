"""``baseline``: the EchoNet-Dynamic segmentation recipe (DeepLabV3 and friends, end to end).

Inputs are the traced frames normalised per channel by the train split's mean and std, as the
reference does; no augmentation. The config's defaults are the reference recipe (torchvision
DeepLabV3-ResNet50 from scratch; SGD lr 1e-5, momentum 0.9, no weight decay, constant rate; batch
20 videos; 50 epochs; BCE summed over pixels and averaged over ES and ED; the best epoch by
validation loss; seed 0), with one difference: BatchNorm statistics are recomputed before each
validation (``precise_bn``). The reference validates with the running averages training left,
which settle over 50 epochs but not in the short runs a search judges trials by (a six-epoch
LR-ASPP scored pooled Dice 0.000 that way, 0.93 with them recomputed). The preset
``echonet_reference`` is the reference exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lvseg.config import TrainConfig, choice
from lvseg.framestore import FrameStore
from lvseg.losses import channels
from lvseg.models.baseline import MODELS, build_model
from lvseg.recipes.base import SPLITS, TrainedRecipe, split_data
from lvseg.resident import rows_of
from lvseg.train import SplitData, pick_device


@dataclass(frozen=True, kw_only=True)
class BaselineConfig(TrainConfig):
    recipe: str = "baseline"
    model: str = "deeplabv3_resnet50"
    backbone_weights: str | None = None  # local state-dict file for the backbone; None: random init

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(self, "model", MODELS)


def normalised_inputs(data: FrameStore, rows: np.ndarray, config: BaselineConfig):
    """``inputs(indices)`` over the split's samples -> float (B, 3, H, W), (x - mean) / std, on
    the trial's device: the uint8 frames are resident there within the budget (lvseg.resident)
    and normalised there."""
    device = pick_device(config.device)
    images = data.images.reshape(-1, *data.images.shape[2:])  # (V*2, H, W, 3) in store order
    batch = rows_of(images, rows, device, config.resident_gb)
    mean = torch.from_numpy(data.mean).view(1, 3, 1, 1).to(device)
    std = torch.from_numpy(data.std).view(1, 3, 1, 1).to(device)

    def inputs(index: np.ndarray) -> torch.Tensor:
        x = batch(index).permute(0, 3, 1, 2).float()
        return (x - mean) / std

    inputs.streamed = batch.streamed
    return inputs


class BaselineRecipe(TrainedRecipe):
    name = "baseline"
    config = BaselineConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "echonet_reference": {"precise_bn": 0}}  # with the defaults: the reference exactly

    def caveats(self, config: BaselineConfig, data: FrameStore) -> list[str]:
        return super().caveats(config, data) + (["TINY test model"] if config.model == "tiny" else [])

    def build(self, config: BaselineConfig, data: FrameStore) -> tuple[nn.Module, dict[str, SplitData]]:
        model = build_model(config.model, out_channels=channels(config.loss), backbone_weights=config.backbone_weights)
        splits = {s: split_data(data, s, lambda rows: normalised_inputs(data, rows, config))
                  for s in SPLITS}
        return model, splits

