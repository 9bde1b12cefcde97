from __future__ import annotations

import pytest
import torch

from lvseg.models import dinov2


@pytest.mark.parametrize("image_size, layers", [(224, 1), (224, 4), (112, 1), (448, 4)])
def test_patch_features_drop_cls_and_keep_the_grid(image_size: int, layers: int) -> None:
    model = dinov2.load_backbone("tiny")
    images = torch.randint(0, 255, (2, 112, 112, 3), dtype=torch.uint8)
    features = dinov2.patch_features(model, images, image_size, layers)
    grid = image_size // 14
    assert features.shape == (2, 32 * layers, grid, grid)
    assert dinov2.feature_shape("tiny", image_size, layers) == (32 * layers, grid, grid)


def test_backbone_is_frozen_and_in_eval_mode() -> None:
    model = dinov2.load_backbone("tiny")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.config.patch_size == 14


def test_random_presets_are_deterministic_and_labelled() -> None:
    a, b = dinov2.load_backbone("tiny"), dinov2.load_backbone("tiny")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert dinov2.fingerprint("tiny") == dinov2.fingerprint("tiny") != dinov2.fingerprint("random-small")
    assert "RANDOM" in dinov2.describe("tiny")


def test_preprocess_resizes_without_cropping() -> None:
    images = torch.zeros(1, 112, 112, 3, dtype=torch.uint8)
    images[:, :, :56] = 255  # left half white
    x = dinov2.preprocess(images, 224)
    assert x.shape == (1, 3, 224, 224)
    assert x[0, 0, :, :100].min() > 2 and x[0, 0, :, 124:].max() < -2  # halves stay halves


def test_missing_pretrained_model_says_where_it_looked(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="neither a local directory nor in the offline Hugging Face cache"):
        dinov2.load_backbone(str(tmp_path / "dinov2-nothere"))


def test_local_directory_round_trip(tmp_path) -> None:
    model = dinov2.load_backbone("tiny")
    model.save_pretrained(tmp_path / "mine")
    loaded = dinov2.load_backbone(str(tmp_path / "mine"))
    images = torch.randint(0, 255, (1, 112, 112, 3), dtype=torch.uint8)
    assert torch.allclose(dinov2.patch_features(model, images, 112, 1), dinov2.patch_features(loaded, images, 112, 1))
    assert dinov2.fingerprint(str(tmp_path / "mine")) != dinov2.fingerprint("tiny")
