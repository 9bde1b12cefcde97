"""``sam_decoder``: SAM's mask decoder tuned on cached embeddings, with the tiny random SAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT

from lvseg.config import parse_config
from lvseg.embeddings import load_embeddings
from lvseg.models.sam import PromptedDecoder, build_sam, decode_batch, predictor, prompt_arrays, set_embedding
from lvseg.prompts import Prompt
from lvseg.recipes import get_recipe


def _prompts() -> list[Prompt]:
    return [Prompt(np.array([[50.0 + i, 60.0]]), np.array([1]), np.array([30.0, 35.0, 80.0 + i, 90.0]))
            for i in range(3)]


def test_the_batched_decoder_is_sams_own_decoder_frame_by_frame() -> None:
    sam = build_sam("tiny", None)
    torch.manual_seed(1)
    embeddings = torch.randn(3, 64, 16, 16)
    points, labels, boxes = (torch.from_numpy(a) for a in prompt_arrays(_prompts(), (112, 112), 256))
    sparse, dense = sam.prompt_encoder(points=(points, labels), boxes=boxes, masks=None)
    pe = sam.prompt_encoder.get_dense_pe()
    batched = decode_batch(sam.mask_decoder, embeddings, pe, sparse, dense)
    for i in range(3):
        single, _ = sam.mask_decoder(embeddings[i:i + 1], pe, sparse[i:i + 1], dense[i:i + 1], multimask_output=False)
        torch.testing.assert_close(batched[i:i + 1], single, atol=1e-5, rtol=1e-5)


def test_untuned_it_predicts_what_sam_predicts_from_the_same_prompt(small_store) -> None:
    sam = build_sam("tiny", None)
    embedding = load_embeddings(small_store, "tiny", None, progress=False)[1, 0].astype(np.float32)
    prompt = _prompts()[0]
    reference = predictor(sam)
    set_embedding(reference, embedding, (112, 112))
    logits, _, _ = reference.predict(point_coords=prompt.points, point_labels=prompt.labels, box=prompt.box,
                                     multimask_output=False, return_logits=True)
    arrays = [torch.from_numpy(a[:1]) for a in prompt_arrays([prompt], (112, 112), 256)]
    ours = PromptedDecoder(sam, (112, 112), out_channels=1)(torch.from_numpy(embedding)[None], *arrays)
    np.testing.assert_allclose(ours[0, 0].detach().numpy(), logits[0], atol=1e-4)


def test_only_the_decoder_trains_and_the_encoder_never_runs_on_a_warm_cache(small_store, tmp_path: Path,
                                                                            monkeypatch) -> None:
    recipe = get_recipe("sam_decoder")
    config = parse_config({"recipe": "sam_decoder", "strategy": "box", "epochs": 1, "batch_size": 2})
    load_embeddings(small_store, "tiny", None, progress=False)  # warm

    def encoder(self, x):
        raise AssertionError("the image encoder ran although the embeddings are cached")

    monkeypatch.setattr(ImageEncoderViT, "forward", encoder)
    model, _ = recipe.build(config, small_store)
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"mask_decoder"}
    assert recipe(config, small_store, workdir=tmp_path).status.kind == "completed"
    with_prompts = parse_config({"recipe": "sam_decoder", "strategy": "box", "train_prompt_encoder": True})
    model, _ = recipe.build(with_prompts, small_store)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"mask_decoder",
                                                                                         "prompt_encoder"}


def test_tuning_beats_the_same_sam_zero_shot_with_the_same_prompts(training_store, tmp_path: Path) -> None:
    config = parse_config({"recipe": "sam_decoder", "strategy": "box_center", "lr": 3e-3, "train_prompt_encoder": True,
                           "epochs": 12, "batch_size": 4})
    reports: list[dict] = []
    result = get_recipe("sam_decoder")(config, training_store, report=reports.append, workdir=tmp_path)
    zero_shot, tuned = reports[0]["zero_shot_val_dice"], result.best["val_dice"]
    print(f"tiny random SAM, box_center prompts, val Dice: zero-shot {zero_shot:.3f}, tuned {tuned:.3f}")
    assert tuned > zero_shot + 0.3, (zero_shot, [round(r["val_dice"], 3) for r in reports])
