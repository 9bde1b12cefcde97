"""Probe feature-cache speed-up: one ``dinov2_probe`` trial on cached features versus the same
trial running the frozen backbone on every step (the seed report's set-up).

DINOv2-small architecture with RANDOM weights (speed only: no result), 224 px, linear head, the
frames of a synthetic folder. Both trials use the same Trainer, head, seed and batches; only where
the features come from differs. The one-off cache build is reported separately.

    python bench/probe_cache.py [--videos 150] [--epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from benchlib import timed_trial, with_inputs

from lvseg.config import parse_config
from lvseg.features import load_features
from lvseg.framestore import load_store
from lvseg.models import dinov2
from lvseg.recipes import get_recipe
from lvseg.recipes.probe import ProbeRecipe
from lvseg.synth import write_synthetic

BACKBONE = "random-small"


class UncachedProbe(ProbeRecipe):
    """The probe as the seed ran it: every batch goes through the frozen backbone."""

    def build(self, config, data):
        model, splits = super().build(config, data)
        backbone = dinov2.load_backbone(config.backbone)

        def make(split: str, _) -> object:
            images = data.frames(split).images
            return lambda index: dinov2.patch_features(backbone, torch.from_numpy(images[index]), config.image_size,
                                                       config.layers)

        return model, with_inputs(splits, make)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    config = parse_config({"recipe": "dinov2_probe", "backbone": BACKBONE, "image_size": 224, "head": "linear",
                           "epochs": args.epochs, "batch_size": 16, "precise_bn": 0})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = load_store(write_synthetic(tmp / "echonet", args.videos, seed=0), tmp / "cache", progress=False)
        frames = 2 * len(store)
        print(f"{frames} frames, {dinov2.describe(BACKBONE)}, 224 px, {args.epochs} epochs, "
              f"{torch.get_num_threads()} torch threads")
        started = time.perf_counter()
        load_features(store, BACKBONE, 224, 1, progress=False)
        print(f"one-off feature cache build (every frame through the backbone once): "
              f"{time.perf_counter() - started:.1f} s")
        cached_s, cached_dice = timed_trial(get_recipe("dinov2_probe"), config, store, tmp / "cached")
        uncached_s, uncached_dice = timed_trial(UncachedProbe(), config, store, tmp / "uncached")
        print(f"trial with a warm cache:         {cached_s:.2f} s (val Dice {cached_dice:.4f})")
        print(f"trial running the backbone:      {uncached_s:.2f} s (val Dice {uncached_dice:.4f})")
        print(f"probe cache speed-up per trial: {uncached_s / cached_s:.1f}x")


if __name__ == "__main__":
    main()
