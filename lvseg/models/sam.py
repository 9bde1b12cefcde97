"""Segment Anything models, and SAM with a cached image embedding.

- ``vit_b``, ``vit_l``, ``vit_h``: the published architectures with weights from a local checkpoint
  file, loaded here with ``weights_only=True`` (the package's builders call ``torch.load`` unsafely).
- ``random_vit_b``: the vit_b architecture with random weights, for benchmarks (never a result).
- ``tiny``: a small random ``Sam`` assembled from the package's modeling classes (256 px input,
  16x16 embedding), for tests and the demo (never a result).

The image encoder costs ~200x the prompt decoder, so embeddings are computed once per frame
(:func:`lvseg.embeddings.load_embeddings`) and :class:`CachedPredictor` runs only the decoder.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.build_sam import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

SAM_MODELS = ("tiny", "random_vit_b", "vit_b", "vit_l", "vit_h")
INIT_SEED = 0
TINY = dict(img_size=256, embed_dim=64, depth=2, heads=2, prompt_dim=64)
CHECKPOINT_HELP = ("download it on a machine with internet from the segment-anything release "
                   "(e.g. sam_vit_b_01ec64.pth), copy it here and set `checkpoint:` to its path")


def needs_checkpoint(model: str) -> bool:
    return model in ("vit_b", "vit_l", "vit_h")


def describe(model: str) -> str:
    return model if needs_checkpoint(model) else f"{model} (RANDOM weights - not a result)"


def fingerprint(model: str, checkpoint: str | None) -> str:
    """Identity of the weights: random models by name, seed and torch version; real ones by the
    checkpoint file's hash."""
    digest = hashlib.sha256(json.dumps([model, INIT_SEED, torch.__version__]).encode())
    if needs_checkpoint(model):
        path = _checkpoint_path(model, checkpoint)
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()[:20]


def _checkpoint_path(model: str, checkpoint: str | None) -> Path:
    path = Path(checkpoint) if checkpoint else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"SAM {model} checkpoint {checkpoint!r} not found: {CHECKPOINT_HELP}")
    return path


def tiny_sam() -> Sam:
    size, dim, prompt = TINY["img_size"], TINY["embed_dim"], TINY["prompt_dim"]
    grid = size // 16
    return Sam(
        image_encoder=ImageEncoderViT(img_size=size, patch_size=16, embed_dim=dim, depth=TINY["depth"],
                                      num_heads=TINY["heads"], mlp_ratio=2, out_chans=prompt, qkv_bias=True,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                                      window_size=4, global_attn_indexes=(1,)),
        prompt_encoder=PromptEncoder(embed_dim=prompt, image_embedding_size=(grid, grid),
                                     input_image_size=(size, size), mask_in_chans=8),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=prompt,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=prompt, mlp_dim=128,
                                                               num_heads=2),
                                 iou_head_depth=2, iou_head_hidden_dim=64),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )


def build_sam(model: str, checkpoint: str | None = None) -> Sam:
    """A SAM in eval mode with frozen weights."""
    if model not in SAM_MODELS:
        raise ValueError(f"unknown SAM model {model!r}; known: {', '.join(SAM_MODELS)}")
    torch.manual_seed(INIT_SEED)
    if model == "tiny":
        sam = tiny_sam()
    else:
        sam = sam_model_registry[model.removeprefix("random_")](checkpoint=None)
        if needs_checkpoint(model):
            state = torch.load(_checkpoint_path(model, checkpoint), map_location="cpu", weights_only=True)
            sam.load_state_dict(state)
    sam.requires_grad_(False)
    return sam.eval()


def embedding_shape(model: str) -> tuple[int, int, int]:
    if model == "tiny":
        grid = TINY["img_size"] // 16
        return TINY["prompt_dim"], grid, grid
    return 256, 64, 64


@torch.no_grad()
def embed(sam: Sam, frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB frames -> image embeddings (B, C, h, w), exactly as
    ``SamPredictor.set_image`` computes them (its PIL resize, then the model's normalisation)."""
    transform = SamPredictor(sam).transform
    resized = np.stack([transform.apply_image(np.ascontiguousarray(frame)) for frame in frames])
    batch = torch.as_tensor(resized, device=sam.device).permute(0, 3, 1, 2).contiguous()
    return sam.image_encoder(sam.preprocess(batch))


class CachedPredictor(SamPredictor):
    """SamPredictor whose image embedding comes from the cache: ``set_embedding`` replaces
    ``set_image``, and ``predict`` runs only the prompt encoder and the mask decoder."""

    def set_embedding(self, embedding: np.ndarray, original_size: tuple[int, int]) -> None:
        self.reset_image()
        self.original_size = original_size
        self.input_size = self.transform.get_preprocess_shape(*original_size, self.transform.target_length)
        self.features = torch.as_tensor(np.asarray(embedding, dtype=np.float32), device=self.device)[None]
        self.is_image_set = True
