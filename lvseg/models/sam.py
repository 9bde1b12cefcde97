"""Segment Anything models by name, and SAM's prompt decoder on cached image embeddings.

``SAM_MODELS`` maps each name to how it is built, whether it needs a checkpoint file, and the shape
of its image embedding:

- ``vit_b``, ``vit_l``, ``vit_h``: the published architectures with weights from a local checkpoint
  file, loaded here with ``weights_only=True`` (the package's builders call ``torch.load`` unsafely).
- ``random_vit_b``: the vit_b architecture with random weights, for benchmarks (never a result).
- ``tiny``: a small random ``Sam`` assembled from the package's modeling classes (256 px input,
  16x16 embedding), for tests and the demo (never a result).

The image encoder costs ~200x the prompt decoder, so embeddings are computed once per frame
(:func:`lvseg.embeddings.load_embeddings`) and :func:`set_embedding` lets ``SamPredictor`` run the
decoder alone. ``segment_anything`` (and torchvision with it, ~4 s) is imported only where a SAM is
built or used.

Conventions (SamPredictor's): images are uint8 (H, W, 3) RGB; points are (x, y) = (column, row)
pixels of the original frame; boxes are XYXY.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lvseg.registry import lookup

if TYPE_CHECKING:
    from segment_anything import SamPredictor
    from segment_anything.modeling import Sam

INIT_SEED = 0
TINY = dict(img_size=256, embed_dim=64, depth=2, heads=2, prompt_dim=64)
CHECKPOINT_HELP = ("download it on a machine with internet from the segment-anything release "
                   "(e.g. sam_vit_b_01ec64.pth), copy it here and set `checkpoint:` to its path")


def tiny_sam() -> Sam:
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

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


def published(architecture: str) -> Sam:
    """The published architecture, randomly initialised (weights are loaded by :func:`build_sam`)."""
    from segment_anything.build_sam import sam_model_registry

    return sam_model_registry[architecture](checkpoint=None)


@dataclass(frozen=True)
class SamModel:
    """How to build a SAM (random weights), whether it needs a checkpoint file for its real ones,
    and its image embedding's (C, h, w)."""

    build: Callable[[], Sam]
    needs_checkpoint: bool
    embedding_shape: tuple[int, int, int]


_TINY_GRID = TINY["img_size"] // 16
SAM_MODELS: dict[str, SamModel] = {
    "tiny": SamModel(tiny_sam, False, (TINY["prompt_dim"], _TINY_GRID, _TINY_GRID)),
    "random_vit_b": SamModel(partial(published, "vit_b"), False, (256, 64, 64)),
    "vit_b": SamModel(partial(published, "vit_b"), True, (256, 64, 64)),
    "vit_l": SamModel(partial(published, "vit_l"), True, (256, 64, 64)),
    "vit_h": SamModel(partial(published, "vit_h"), True, (256, 64, 64)),
}


def needs_checkpoint(model: str) -> bool:
    return lookup(SAM_MODELS, model, "SAM model").needs_checkpoint


def embedding_shape(model: str) -> tuple[int, int, int]:
    return lookup(SAM_MODELS, model, "SAM model").embedding_shape


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


def build_sam(model: str, checkpoint: str | None) -> Sam:
    """A SAM in eval mode with frozen weights (seeded random ones unless the model needs a checkpoint)."""
    spec = lookup(SAM_MODELS, model, "SAM model")
    torch.manual_seed(INIT_SEED)
    sam = spec.build()
    if spec.needs_checkpoint:
        sam.load_state_dict(torch.load(_checkpoint_path(model, checkpoint), map_location="cpu", weights_only=True))
    sam.requires_grad_(False)
    return sam.eval()


@torch.no_grad()
def embed(sam: Sam, frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) RGB frames -> image embeddings (B, C, h, w), exactly as
    ``SamPredictor.set_image`` computes them (its PIL resize, then the model's normalisation)."""
    from segment_anything import SamPredictor

    transform = SamPredictor(sam).transform
    resized = np.stack([transform.apply_image(np.ascontiguousarray(frame)) for frame in frames])
    batch = torch.as_tensor(resized, device=sam.device).permute(0, 3, 1, 2).contiguous()
    return sam.image_encoder(sam.preprocess(batch))


def predictor(sam: Sam) -> SamPredictor:
    from segment_anything import SamPredictor

    return SamPredictor(sam)


def set_embedding(predictor: Any, embedding: np.ndarray, original_size: tuple[int, int]) -> None:
    """``SamPredictor.set_image`` from a cached embedding: afterwards ``predictor.predict`` runs only
    the prompt encoder and the mask decoder, and predicts exactly what it would after set_image."""
    predictor.reset_image()
    predictor.original_size = original_size
    predictor.input_size = predictor.transform.get_preprocess_shape(*original_size, predictor.transform.target_length)
    predictor.features = torch.as_tensor(np.asarray(embedding, dtype=np.float32), device=predictor.device)[None]
    predictor.is_image_set = True


class PromptedDecoder(torch.nn.Module):
    """SAM's prompt encoder and mask decoder on cached image embeddings, batched over frames, with
    one mask per frame (SAM's single-mask output) as logits at the frame's size: what the
    ``sam_decoder`` recipe fine-tunes.

    ``forward(embeddings, points, labels, boxes)``: embeddings float (B, C, h, w); points float
    (B, P, 2) as (x, y) in the model's input frame (see :func:`prompt_arrays`), P may be 0; labels
    int (B, P), 1 = LV, 0 = background; boxes float (B, 4) XYXY in the input frame, or (B, 0) for
    none. Returns logits (B, ``out_channels``, H, W) (two channels: [0, z] for softmax losses).
    """

    def __init__(self, sam: Sam, frame_size: tuple[int, int], out_channels: int) -> None:
        super().__init__()
        from segment_anything.utils.transforms import ResizeLongestSide

        self.prompt_encoder, self.mask_decoder = sam.prompt_encoder, sam.mask_decoder
        self.image_size = sam.image_encoder.img_size
        self.input_size = ResizeLongestSide(self.image_size).get_preprocess_shape(*frame_size, self.image_size)
        self.frame_size, self.out_channels = frame_size, out_channels

    def forward(self, embeddings: torch.Tensor, points: torch.Tensor, labels: torch.Tensor,
                boxes: torch.Tensor) -> torch.Tensor:
        sparse, dense = self.prompt_encoder(points=(points, labels) if points.shape[1] else None,
                                            boxes=boxes if boxes.shape[1] else None, masks=None)
        low_res = decode_batch(self.mask_decoder, embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense)
        # SAM's postprocess_masks: to the padded input size, crop the padding, to the frame's size
        logits = torch.nn.functional.interpolate(low_res, (self.image_size, self.image_size), mode="bilinear",
                                                 align_corners=False)
        logits = logits[..., :self.input_size[0], :self.input_size[1]]
        logits = torch.nn.functional.interpolate(logits, self.frame_size, mode="bilinear", align_corners=False)
        return logits if self.out_channels == 1 else torch.cat([torch.zeros_like(logits), logits], dim=1)


def decode_batch(decoder: Any, embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                 dense: torch.Tensor) -> torch.Tensor:
    """``MaskDecoder(..., multimask_output=False)`` for B frames with one prompt each: (B, 1, 4h, 4w)
    low-resolution mask logits. SAM's own decoder repeats one image's embedding for each of several
    prompts, so a batch of images would be crossed with every prompt; here frame i meets prompt i."""
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([tokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse], dim=1)
    src = embeddings + dense
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, image_pe.expand(b, -1, -1, -1), tokens)
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper = decoder.output_hypernetworks_mlps[0](hs[:, 1, :])  # the single-mask token
    b, c, h, w = upscaled.shape
    return (hyper.unsqueeze(1) @ upscaled.reshape(b, c, h * w)).reshape(b, 1, h, w)


def prompt_arrays(prompts: list[Any], frame_size: tuple[int, int], image_size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack per-frame prompts (one strategy: the same number of points, a box or none) into
    points float32 (N, P, 2), labels int64 (N, P) and boxes float32 (N, 4) or (N, 0), with the
    coordinates moved into the model's input frame as SamPredictor does."""
    from segment_anything.utils.transforms import ResizeLongestSide

    transform = ResizeLongestSide(image_size)
    points = np.stack([transform.apply_coords(np.asarray(p.points, float).reshape(-1, 2), frame_size)
                       for p in prompts]).astype(np.float32)
    labels = np.stack([np.asarray(p.labels, np.int64) for p in prompts])
    has_box = prompts[0].box is not None
    boxes = (np.stack([transform.apply_boxes(np.asarray(p.box, float)[None], frame_size)[0] for p in prompts])
             if has_box else np.zeros((len(prompts), 0))).astype(np.float32)
    return points, labels, boxes
