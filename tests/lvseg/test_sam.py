"""SAM with cached embeddings, and the sam_prompts recipe, on the tiny random SAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT

from lvseg.config import ConfigError, parse_config
from lvseg.embeddings import load_embeddings
from lvseg.models import sam as sam_models
from lvseg.models.sam import build_sam, embed, predictor, set_embedding
from lvseg.recipes import get_recipe


def test_cached_embedding_predicts_exactly_like_set_image(small_store) -> None:
    sam = build_sam("tiny", None)
    frame = np.array(small_store.images[0, 1])
    reference = SamPredictor(sam)
    reference.set_image(frame)
    cached = predictor(sam)
    set_embedding(cached, embed(sam, frame[None])[0].numpy(), frame.shape[:2])
    assert torch.allclose(cached.features, reference.features, atol=1e-6)
    kwargs = dict(point_coords=np.array([[60.0, 50.0], [20.0, 90.0]]), point_labels=np.array([1, 0]),
                  box=np.array([40.0, 20.0, 90.0, 80.0]), multimask_output=True)
    for a, b in zip(cached.predict(**kwargs), reference.predict(**kwargs), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_embedding_cache_holds_every_frame(small_store) -> None:
    embeddings = load_embeddings(small_store, "tiny", None, progress=False)
    assert embeddings.dtype == np.float16 and embeddings.shape == (len(small_store), 2, 64, 16, 16)
    direct = embed(build_sam("tiny", None), np.array(small_store.images[2]))
    np.testing.assert_allclose(embeddings[2].astype(np.float32), direct.numpy(), atol=2e-2, rtol=1e-2)


def test_a_warm_cache_never_calls_the_encoder(small_store, tmp_path: Path, monkeypatch) -> None:
    config = parse_config({"recipe": "sam_prompts", "strategy": "seed_two_point"})
    get_recipe("sam_prompts")(config, small_store, workdir=tmp_path / "cold")  # warms (or finds) the cache
    calls = {"encoder": 0}

    def counting(self, x):
        calls["encoder"] += 1
        raise AssertionError("the image encoder ran although the embeddings are cached")

    monkeypatch.setattr(ImageEncoderViT, "forward", counting)
    result = get_recipe("sam_prompts")(config, small_store, workdir=tmp_path / "warm")
    assert result.status.kind == "completed" and calls["encoder"] == 0


def test_recipe_reports_dice_ef_and_whole_heart_and_writes_pictures(small_store, tmp_path: Path) -> None:
    reports: list[dict] = []
    config = parse_config({"recipe": "sam_prompts", "strategy": "box", "split": "val"})
    result = get_recipe("sam_prompts")(config, small_store, report=reports.append, workdir=tmp_path)
    assert len(reports) == 1 and reports[0]["epoch"] == 1
    assert {"val_dice", "val_dice_es", "val_dice_ed", "val_dice_mean", "ef_mae", "whole_heart_fraction"} <= set(
        reports[0])
    assert set(reports[0]) == get_recipe("sam_prompts").metric_keys(config)  # what the search validates against
    assert 0 <= reports[0]["whole_heart_fraction"] <= 1 and result.best == reports[0]
    for name in ("overlay.png", "dice_histogram.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_from_model_prompts_come_from_a_trained_checkpoint(small_store, tmp_path: Path) -> None:
    baseline = parse_config({"recipe": "baseline", "model": "tiny", "optimizer": "adam", "lr": 3e-3,
                             "batch_size": 2, "loss_reduction": "mean", "epochs": 1})
    trained = get_recipe("baseline")(baseline, small_store, workdir=tmp_path / "baseline")
    config = parse_config({"recipe": "sam_prompts", "strategy": "from_model", "prompt_model": str(trained.checkpoint)})
    assert get_recipe("sam_prompts")(config, small_store, workdir=tmp_path / "sam").status.kind == "completed"


def test_checkpoint_loading_is_weights_only_and_validated(tmp_path: Path, monkeypatch) -> None:
    torch.save(sam_models.tiny_sam().state_dict(), tmp_path / "sam.pth")
    monkeypatch.setitem(sam_models.SAM_MODELS, "vit_b", sam_models.SamModel(sam_models.tiny_sam, True, (64, 16, 16)))
    loaded = build_sam("vit_b", str(tmp_path / "sam.pth"))
    saved = torch.load(tmp_path / "sam.pth", weights_only=True)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved.items())
    with pytest.raises(FileNotFoundError, match="sam_vit_b_01ec64.pth"):
        build_sam("vit_b", str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("mapping, message", [
    ({"model": "vit_h"}, "checkpoint: None is required for model vit_h"),
    ({"strategy": "from_model"}, "prompt_model: None is required by strategy from_model"),
    ({"strategy": "lasso"}, "strategy: 'lasso' is not one of"),
    ({"mask_choice": "largest"}, "mask_choice: 'largest' is not one of"),
    ({"k": 0}, "k: 0 must be >= 1"),
    ({"split": "all"}, "split: 'all' is not one of train, val, test"),
])
def test_sam_config_errors(mapping: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"recipe": "sam_prompts", **mapping})
