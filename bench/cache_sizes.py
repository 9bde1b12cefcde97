"""Bytes of every frozen-network cache at EchoNet-Dynamic's real size, before anyone builds one:
DINOv2 small to giant x image size x layers, and SAM's image embeddings. Prints the Markdown table
the README carries. Computed from the caches' shapes (lvseg.framecache.cache_bytes), no network
runs.

    .venv/bin/python bench/cache_sizes.py [--videos 10030]
"""

from __future__ import annotations

import argparse

from lvseg.framecache import cache_bytes
from lvseg.models.dinov2 import PATCH
from lvseg.models.sam import embedding_shape
from lvseg.recipes.probe import PROBE_LAYERS

DINOV2_HIDDEN = {"small": 384, "base": 768, "large": 1024, "giant": 1536}  # the published models' hidden sizes
IMAGE_SIZES = (224, 448)
SAM_MODELS = ("vit_b", "vit_l", "vit_h")


def rows(frames: int) -> list[tuple[str, str, int]]:
    """(cache, settings, bytes) of every DINOv2 and SAM cache over ``frames`` traced frames."""
    table = []
    for name, hidden in DINOV2_HIDDEN.items():
        for size in IMAGE_SIZES:
            for layers in PROBE_LAYERS:
                grid = size // PATCH
                table.append((f"DINOv2 {name}", f"{size} px, {layers} layer(s)",
                              cache_bytes(frames, (hidden * layers, grid, grid))))
    for model in SAM_MODELS:
        nbytes = cache_bytes(frames, embedding_shape(model))
        table.append((f"SAM {model}", "1024 px input, 256x64x64 embedding", nbytes))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_030)
    args = parser.parse_args()
    frames = 2 * args.videos
    table = rows(frames)
    print(f"| cache ({frames:,} traced frames, fp16) | settings | size |\n| --- | --- | ---: |")
    for cache, settings, nbytes in table:
        print(f"| {cache} | {settings} | {nbytes / 1e9:,.1f} GB |")
    largest = max(table, key=lambda row: row[2])
    print(f"cache sizes: largest {largest[2] / 1e9:.0f} GB ({largest[0]}, {largest[1]})")


if __name__ == "__main__":
    main()
