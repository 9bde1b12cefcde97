"""``dinov2_probe``: a frozen DINOv2 backbone with a trained head, on cached patch features.

The backbone never runs during training: its features of every stored frame are computed once
(:mod:`lvseg.features`) and each trial trains only the head on them. Frames are resized whole to
``image_size``, which must be a multiple of DINOv2's 14 px patch (the backbone would floor any
other size to fewer patches without a word: 100 px gives 7x7).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lvseg import nativeops
from lvseg.config import TrainConfig, check, choice
from lvseg.features import feature_cache
from lvseg.framecache import FrameCache
from lvseg.framestore import FrameStore
from lvseg.losses import channels
from lvseg.models.dinov2 import PATCH, is_random
from lvseg.models.heads import HALF_INPUT_HEADS, HEADS, build_probe
from lvseg.recipes.base import SPLITS, TrainedRecipe, split_data
from lvseg.resident import SLOTS, BatchSlots, rows_of, torch_dtype
from lvseg.train import SplitData, computes_in_bf16, pick_device

PROBE_LAYERS = (1, 4)


@dataclass(frozen=True, kw_only=True)
class ProbeConfig(TrainConfig):
    """Frozen DINOv2 + a trained head. Defaults suit a head on cached features, not the reference."""

    recipe: str = "dinov2_probe"
    backbone: str = "tiny"
    image_size: int = 224
    head: str = "linear"
    layers: int = 1
    optimizer: str = "adamw"
    lr: float = 1e-3
    batch_size: int = 16
    loss_reduction: str = "mean"
    epochs: int = 10
    best_by: str = "val_dice"

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(self, "head", HEADS)
        choice(self, "layers", PROBE_LAYERS)
        check(self, "image_size", self.image_size >= PATCH and self.image_size % PATCH == 0,
              f"must be a positive multiple of the patch size {PATCH} (e.g. 224 or 448)")


def feature_inputs(features: np.ndarray, rows: np.ndarray, config: ProbeConfig):
    """``inputs(indices)`` over the split's samples -> (B, C, h, w) in channels-last memory on the
    trial's device, from the fp16 cache (resident there within the budget, channels-last too:
    lvseg.resident). A 1x1 convolution over channels-last input is one matrix product per batch:
    on a 2-core CPU a 768-channel batch of 64 took ~3.4 ms forward against ~37 ms over NCHW.

    The fp16 rows go to the head as they are where it can take them: under bf16 autocast (a GPU),
    which rounds them to bf16, the same values it made of a float32 copy (fp16 -> float32 is
    exact), and to the linear head on a CPU, which computes in float32 without a copy of the batch
    (lvseg.models.halflinear). A float32 copy would write, then be read, at twice the features'
    bytes on every step. The other heads' BatchNorm wants float32 on a CPU: their batch is cast.
    With the native kernels (lvseg.nativeops) the linear head on a CPU takes the resident rows and
    the batch's indices, ``(rows, frames)``, and reads the batch where it lies: no gather."""
    flat = features.reshape(-1, *features.shape[2:])  # (V*2, C, h, w) in store order
    device = pick_device(config.device)
    batch = rows_of(flat, rows, device, config.resident_gb, channels_last=True)
    if computes_in_bf16(device):
        return batch
    if (config.head in HALF_INPUT_HEADS and not batch.streamed
            and nativeops.head_ready(batch.values.permute(0, 2, 3, 1))):
        def rows_and_frames(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            return batch.values, torch.from_numpy(np.asarray(index, np.int64))

        rows_and_frames.streamed = False
        return rows_and_frames
    dtype = torch_dtype(flat.dtype) if config.head in HALF_INPUT_HEADS else torch.float32
    # resident rows are gathered as each batch is asked for (no prefetch): one slot, hot in the cache
    slots = BatchSlots(SLOTS if batch.streamed else 1, dtype)

    def inputs(index: np.ndarray) -> torch.Tensor:
        return slots(batch, index)

    inputs.streamed = batch.streamed
    return inputs


class ProbeRecipe(TrainedRecipe):
    name = "dinov2_probe"
    config = ProbeConfig
    cache_keys = ("backbone", "image_size", "layers")

    def caches(self, config: ProbeConfig, data: FrameStore) -> list[FrameCache]:
        return [feature_cache(data, config.backbone, config.image_size, config.layers, pick_device(config.device))]

    def caveats(self, config: ProbeConfig, data: FrameStore) -> list[str]:
        random = [f"RANDOMLY initialised backbone ({config.backbone})"] if is_random(config.backbone) else []
        return super().caveats(config, data) + random

    def build(self, config: ProbeConfig, data: FrameStore) -> tuple[nn.Module, dict[str, SplitData]]:
        (cache,) = self.caches(config, data)
        features = cache.load()
        mask_size = tuple(data.masks.shape[2:4])
        model = build_probe(config.head, channels=features.shape[2], out=channels(config.loss), mask_size=mask_size)
        return model, {s: split_data(data, s, lambda rows: feature_inputs(features, rows, config)) for s in SPLITS}
