"""``sam_decoder``: SAM's mask decoder fine-tuned on cached image embeddings.

The seed report used SAM zero-shot; fine-tuning SAM on EchoNet-Dynamic reached Dice 0.911 against
DeepLabV3's 0.915 (Chao et al., medRxiv 2023.09.19.23295772). The image encoder stays frozen and
its embeddings are already cached (:mod:`lvseg.embeddings`), so a trial trains only the mask
decoder (and, if asked, the prompt encoder), exactly as the probe trains a head on cached
features: the search over learning rate, optimiser, batch size and loss covers SAM too.

Every frame's prompt comes from a strategy of :mod:`lvseg.prompts` (from the tracing, with
``jitter`` px of click noise, or fully automatic: ``prior_box``, ``prior_point``, ``from_model``),
placed once per split with a seeded generator. The decoder's single-mask output is upsampled to the
frame as SAM does, and trained with the shared losses. Each epoch also reports
``zero_shot_val_dice``: the same SAM and prompts before any tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lvseg.config import TrainConfig
from lvseg.embeddings import embedding_cache
from lvseg.framecache import FrameCache
from lvseg.framestore import FrameStore
from lvseg.losses import channels
from lvseg.models.sam import PromptedDecoder, build_sam, prompt_arrays
from lvseg.recipes.base import SPLITS, TrainedRecipe, sample_rows, write_per_video
from lvseg.recipes.sam_prompts import SamSettings, sam_caveats, split_prompts
from lvseg.report import overlay
from lvseg.resident import on_device, rows_of
from lvseg.train import BEST, EPOCH_METRICS, Report, SplitData, Trainer, pick_device

ZERO_SHOT = "zero_shot_val_dice"


@dataclass(frozen=True, kw_only=True)
class SamDecoderConfig(TrainConfig, SamSettings):
    """SAM and its prompts (as ``sam_prompts``), and how the decoder trains."""

    recipe: str = "sam_decoder"
    train_prompt_encoder: bool = False  # also tune the prompt encoder (the image encoder stays frozen)
    optimizer: str = "adamw"
    lr: float = 1e-4
    batch_size: int = 8
    loss: str = "bce_dice"
    loss_reduction: str = "mean"
    epochs: int = 10
    best_by: str = "val_dice"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_sam()


def decoder_inputs(embeddings: np.ndarray, videos: np.ndarray, prompts: tuple[np.ndarray, ...],
                   config: SamDecoderConfig):
    """``inputs(indices)`` over a split's samples -> (embeddings float (B, C, h, w), points, labels,
    boxes) on the trial's device, from the fp16 cache (resident there within the budget:
    lvseg.resident) and the split's prompt arrays (small: always on the device)."""
    device = pick_device(config.device)
    flat = embeddings.reshape(-1, *embeddings.shape[2:])  # (V*2, C, h, w) in store order
    batch = rows_of(flat, sample_rows(videos), device, config.resident_gb)
    prompts_there = tuple(torch.from_numpy(np.ascontiguousarray(array)).to(device) for array in prompts)

    def inputs(index: np.ndarray) -> tuple[torch.Tensor, ...]:
        where = on_device(index, device)
        return (batch(index).float(), *(array.index_select(0, where) for array in prompts_there))

    inputs.streamed = batch.streamed
    return inputs


class SamDecoderRecipe(TrainedRecipe):
    name = "sam_decoder"
    config = SamDecoderConfig
    cache_keys = ("model", "checkpoint")

    def metric_keys(self, config: SamDecoderConfig) -> frozenset[str]:
        return EPOCH_METRICS | {ZERO_SHOT}

    def caches(self, config: SamDecoderConfig, data: FrameStore) -> list[FrameCache]:
        return [embedding_cache(data, config.model, config.checkpoint, pick_device(config.device))]

    def caveats(self, config: SamDecoderConfig, data: FrameStore) -> list[str]:
        return super().caveats(config, data) + sam_caveats(config)

    def embeddings(self, config: SamDecoderConfig, data: FrameStore) -> np.ndarray:
        """float16 (V, 2, C, h, w) image embeddings of every stored frame: the cache."""
        (cache,) = self.caches(config, data)
        return cache.load()

    def build(self, config: SamDecoderConfig, data: FrameStore) -> tuple[nn.Module, dict[str, SplitData]]:
        embeddings = self.embeddings(config, data)
        sam = build_sam(config.model, config.checkpoint)  # frozen; the decoder is thawed below
        frame_size = tuple(data.masks.shape[2:4])
        model = PromptedDecoder(sam, frame_size, channels(config.loss))
        model.mask_decoder.requires_grad_(True)
        model.prompt_encoder.requires_grad_(config.train_prompt_encoder)
        splits = {}
        for number, split in enumerate(SPLITS):
            prompts, frames, _ = split_prompts(config, data, split, np.random.default_rng([config.seed, number]))
            arrays = prompt_arrays(prompts, frame_size, model.image_size) if prompts else _no_prompts()
            splits[split] = SplitData(inputs=decoder_inputs(embeddings, data.video_indices(split), arrays, config),
                                      masks=frames.masks, phases=frames.phases, ef=frames.ef[0::2])
        return model, splits

    def reporting(self, trainer: Trainer, splits: dict[str, SplitData], report: Report | None) -> Report | None:
        """Each epoch's report also carries the val Dice of the same SAM and prompts before tuning
        (computed here, before the epoch loop loads any checkpoint)."""
        zero_shot = trainer.evaluate(splits["val"])[0]["val_dice"]
        if report is None:
            return None
        return lambda metrics: report({**metrics, ZERO_SHOT: zero_shot})

    def artifacts(self, config: SamDecoderConfig, data: FrameStore, workdir: Path, title: str) -> list[Path]:
        """Validation overlay of the best epoch (with the prompts drawn) and its per-video table."""
        _, predicted = self.evaluate(config, workdir / BEST, data, "val")
        prompts, frames, _ = split_prompts(config, data, "val", np.random.default_rng([config.seed, 1]))
        overlay(frames.images, predicted, frames.masks, frames.videos, workdir / "overlay.png", title,
                prompts=prompts)
        return [workdir / "overlay.png", write_per_video(frames, predicted, workdir)]


def _no_prompts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An empty split's prompt arrays."""
    return np.zeros((0, 0, 2), np.float32), np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32)
