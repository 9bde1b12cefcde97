"""SAM embedding-cache speed-up: one prompt-strategy trial over the traced frames of a synthetic
folder with cached image embeddings, versus the same trial running the image encoder per frame
(SamPredictor.set_image, what the seed report did).

vit_b architecture with RANDOM weights (the figure is about speed; random SAM masks mean nothing).
Both trials use the same recipe code, strategy and frames; only where embeddings come from differs.

    python bench/sam_cache.py [--videos 14]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lvseg.config import parse_config
from lvseg.embeddings import load_embeddings
from lvseg.framestore import load_store
from lvseg.models.sam import build_sam, embed
from lvseg.recipes.sam_prompts import SamPromptsRecipe
from lvseg.synth import write_synthetic

MODEL = "random_vit_b"


class EncoderPerFrame:
    """Embeddings computed on access, one encoder pass per frame: no cache."""

    def __init__(self, config, data) -> None:
        self.sam, self.images = build_sam(config.model, None), data.images

    def __getitem__(self, key: tuple[int, int]) -> np.ndarray:
        video, phase = key
        return embed(self.sam, np.asarray(self.images[video, phase])[None])[0].numpy()


class UncachedSam(SamPromptsRecipe):
    def embeddings(self, config, data):
        return EncoderPerFrame(config, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=14)
    args = parser.parse_args()
    config = parse_config({"recipe": "sam_prompts", "model": MODEL, "strategy": "seed_two_point", "split": "train"})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = load_store(write_synthetic(tmp / "echonet", args.videos, seed=0), tmp / "cache", progress=False)
        frames = 2 * len(store.video_indices("train"))
        print(f"{frames} traced frames (train split), SAM vit_b architecture with RANDOM weights, "
              f"{torch.get_num_threads()} torch threads")
        started = time.perf_counter()
        UncachedSam()(config, store, workdir=tmp / "uncached")
        uncached_s = time.perf_counter() - started
        print(f"trial running the encoder per frame: {uncached_s:.1f} s")
        started = time.perf_counter()
        load_embeddings(store, MODEL, None, progress=False)
        print(f"one-off embedding cache build (every stored frame, all splits): {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        SamPromptsRecipe()(config, store, workdir=tmp / "cached")
        cached_s = time.perf_counter() - started
        print(f"trial with cached embeddings:        {cached_s:.2f} s")
        print(f"SAM embedding cache speed-up per trial: {uncached_s / cached_s:.1f}x")


if __name__ == "__main__":
    main()
