"""SAM decoder-tuning speed-up: one ``sam_decoder`` trial on cached image embeddings versus the same
trial running SAM's image encoder on every batch (what tuning SAM without the cache costs).

vit_b architecture with RANDOM weights (speed only: no result), a small synthetic folder. Both
trials use the same recipe, prompts, decoder, seed and batches; only where the embeddings come from
differs. The one-off embedding cache build is reported separately.

    python bench/sam_decoder.py [--videos 8] [--epochs 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import timed_trial, with_inputs

from lvseg.config import parse_config
from lvseg.embeddings import load_embeddings
from lvseg.framestore import load_store
from lvseg.models.sam import build_sam, embed, embedding_shape
from lvseg.recipes.sam_decoder import SamDecoderRecipe
from lvseg.synth import write_synthetic
from lvseg.train import SplitData

MODEL = "random_vit_b"


class EncoderPerBatch(SamDecoderRecipe):
    """The same trial, every batch's embeddings computed by the image encoder."""

    def embeddings(self, config, data) -> np.ndarray:
        """Placeholders: build() below replaces every input with the encoder's output."""
        return np.zeros((len(data), 2, *embedding_shape(config.model)), np.float16)

    def build(self, config, data):
        model, splits = super().build(config, data)
        sam = build_sam(config.model, config.checkpoint)

        def make(split: str, cached: SplitData) -> object:
            images = data.frames(split).images
            return lambda index: (embed(sam, np.asarray(images[index])), *cached.inputs(index)[1:])

        return model, with_inputs(splits, make)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    config = parse_config({"recipe": "sam_decoder", "model": MODEL, "strategy": "box_center", "epochs": args.epochs,
                           "batch_size": 4})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = load_store(write_synthetic(tmp / "echonet", args.videos, seed=0), tmp / "cache", progress=False)
        print(f"{2 * len(store)} traced frames, SAM vit_b architecture with RANDOM weights, {args.epochs} epoch(s), "
              f"{torch.get_num_threads()} torch threads")
        uncached_s, _ = timed_trial(EncoderPerBatch(), config, store, tmp / "uncached")
        print(f"trial running the encoder on every batch: {uncached_s:.1f} s")
        started = time.perf_counter()
        load_embeddings(store, MODEL, None, progress=False)
        print(f"one-off embedding cache build (every stored frame): {time.perf_counter() - started:.1f} s")
        cached_s, _ = timed_trial(SamDecoderRecipe(), config, store, tmp / "cached")
        print(f"trial on cached embeddings:               {cached_s:.2f} s")
        print(f"SAM decoder-tuning cache speed-up per trial: {uncached_s / cached_s:.1f}x")


if __name__ == "__main__":
    main()
