"""Frozen DINOv2 backbones (transformers ``Dinov2Model``) and their patch features.

Sources (``backbone`` in a probe config):
- ``tiny``, ``random-small``, ``random-base``: randomly initialised architectures (seeded), for
  tests, the demo and benchmarks. Their features mean nothing; outputs say so.
- a local directory holding ``config.json`` and weights (``save_pretrained`` layout), or a hub
  name such as ``facebook/dinov2-small`` already in the offline Hugging Face cache. Nothing is
  ever downloaded: a missing model is an error that says where we looked.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

PATCH = 14  # DINOv2's patch size; some transformers configs default to 16, so we always pass it
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INIT_SEED = 0
RANDOM_PRESETS = {  # transformers Dinov2Config arguments
    "tiny": dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2),
    "random-small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4),
    "random-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4),
}
WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


def is_random(source: str) -> bool:
    return source in RANDOM_PRESETS


def describe(source: str) -> str:
    """How outputs name a backbone; random ones say so plainly."""
    return f"{source} (RANDOM weights - not a result)" if is_random(source) else source


def resolve_directory(source: str) -> Path:
    """The local folder of a pretrained source: a directory, or an offline hub-cache snapshot."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except Exception as error:  # the hub raises several types for "not cached"; all mean the same
        raise FileNotFoundError(
            f"DINOv2 backbone {source!r} is neither a local directory nor in the offline Hugging Face "
            f"cache ({os.environ.get('HF_HUB_CACHE') or constants.HF_HUB_CACHE}). On a machine with "
            f"internet: `hf download {source} --local-dir DIR` (or save_pretrained), copy DIR here "
            f"and set `backbone: DIR`; or use `backbone: tiny` for a random test model."
        ) from error


def fingerprint(source: str) -> str:
    """Identity of a backbone's weights, without building it: random presets by their config and
    seed, pretrained ones by a hash of their config and weight files."""
    digest = hashlib.sha256()
    if is_random(source):
        digest.update(json.dumps([source, RANDOM_PRESETS[source], INIT_SEED, torch.__version__]).encode())
        return digest.hexdigest()[:20]
    folder = resolve_directory(source)
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 24):
                    digest.update(chunk)
    return digest.hexdigest()[:20]


def load_backbone(source: str) -> nn.Module:
    """A frozen ``Dinov2Model`` in eval mode."""
    from transformers import Dinov2Config, Dinov2Model

    if is_random(source):
        torch.manual_seed(INIT_SEED)
        model = Dinov2Model(Dinov2Config(patch_size=PATCH, image_size=224, **RANDOM_PRESETS[source]))
    else:
        model = Dinov2Model.from_pretrained(resolve_directory(source), local_files_only=True)
        if model.config.patch_size != PATCH:
            raise ValueError(f"{source}: patch_size {model.config.patch_size}, DINOv2 uses {PATCH}")
    model.requires_grad_(False)
    return model.eval()


def preprocess(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB -> float (B, 3, S, S) resized and ImageNet-normalised.

    A plain resize of the whole frame (no crop), so patch features stay aligned with the masks;
    the hub's image processor crops."""
    x = images.permute(0, 3, 1, 2).float() / 255
    x = nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def patch_features(model: nn.Module, images: torch.Tensor, image_size: int, layers: int) -> torch.Tensor:
    """Patch tokens of the last ``layers`` blocks, each layer-normed as DINOv2's probes do, CLS and
    register tokens dropped, concatenated on channels: float (B, layers*C, S/14, S/14)."""
    output = model(preprocess(images, image_size), output_hidden_states=True)
    grid = image_size // PATCH
    skip = 1 + (getattr(model.config, "num_register_tokens", 0) or 0)
    maps = []
    for hidden in output.hidden_states[-layers:]:
        tokens = model.layernorm(hidden)[:, skip:]
        maps.append(tokens.reshape(len(tokens), grid, grid, -1).permute(0, 3, 1, 2))
    return torch.cat(maps, dim=1)


def feature_shape(source: str, image_size: int, layers: int) -> tuple[int, int, int]:
    """(channels, h, w) of ``patch_features`` for a source, from its config alone."""
    if is_random(source):
        hidden = RANDOM_PRESETS[source]["hidden_size"]
    else:
        hidden = json.loads((resolve_directory(source) / "config.json").read_text())["hidden_size"]
    grid = image_size // PATCH
    return hidden * layers, grid, grid


def as_uint8_batch(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array(images, dtype=np.uint8)).to(device)  # a writable copy
