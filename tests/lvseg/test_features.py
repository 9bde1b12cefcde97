from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from lvseg.config import parse_config
from lvseg.features import feature_cache, load_features
from lvseg.models import dinov2
from lvseg.recipes import get_recipe


def test_cached_features_equal_the_backbone_output(small_store) -> None:
    features = load_features(small_store, "tiny", 112, 4, progress=False)
    assert features.dtype == np.float16 and features.shape == (len(small_store), 2, 128, 8, 8)
    frames = torch.from_numpy(np.array(small_store.images[1]))
    direct = dinov2.patch_features(dinov2.load_backbone("tiny"), frames, 112, 4)
    np.testing.assert_allclose(features[1].astype(np.float32), direct.numpy(), rtol=2e-3, atol=2e-3)


def test_key_changes_with_every_ingredient(small_store) -> None:
    paths = {feature_cache(small_store, b, s, n).path for b, s, n in
             [("tiny", 112, 1), ("tiny", 224, 1), ("tiny", 112, 4), ("random-small", 112, 1)]}
    assert len(paths) == 4


def test_a_trial_with_a_warm_cache_never_builds_or_runs_the_backbone(small_store, tmp_path, monkeypatch) -> None:
    config = parse_config({"recipe": "dinov2_probe", "backbone": "tiny", "image_size": 112, "epochs": 1})
    recipe = get_recipe("dinov2_probe")
    recipe(config, small_store, workdir=tmp_path / "cold")  # warms the cache (or finds it warm)
    calls = {"forward": 0}
    original = transformers.Dinov2Model.forward

    def counting_forward(self, *args, **kwargs):
        calls["forward"] += 1
        return original(self, *args, **kwargs)

    def no_loading(source: str):
        raise AssertionError(f"backbone {source} was loaded with a warm cache")

    monkeypatch.setattr(transformers.Dinov2Model, "forward", counting_forward)
    monkeypatch.setattr(dinov2, "load_backbone", no_loading)
    result = recipe(config, small_store, workdir=tmp_path / "warm")
    assert result.status.kind == "completed" and calls["forward"] == 0


def test_a_cold_cache_runs_the_backbone_once_per_batch_of_frames(small_store, tmp_path, monkeypatch) -> None:
    calls = {"forward": 0}
    original = transformers.Dinov2Model.forward

    def counting_forward(self, *args, **kwargs):
        calls["forward"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Dinov2Model, "forward", counting_forward)
    load_features(small_store, "tiny", 126, 1, progress=False)  # a size no other test uses: cold
    assert calls["forward"] == 1  # 8 frames, one batch
    load_features(small_store, "tiny", 126, 1, progress=False)
    assert calls["forward"] == 1


def test_missing_model_is_an_error_before_any_work(small_store, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="dinov2-nothere"):
        load_features(small_store, str(tmp_path / "dinov2-nothere"), 224, 1)


def test_a_truncated_feature_cache_is_rebuilt(small_store, caplog) -> None:
    features = load_features(small_store, "tiny", 112, 1, progress=False)
    expected = np.array(features)
    values = feature_cache(small_store, "tiny", 112, 1).path / "values.npy"
    with values.open("r+b") as handle:
        handle.truncate(values.stat().st_size - 100)
    with caplog.at_level("WARNING"):
        again = load_features(small_store, "tiny", 112, 1, progress=False)
    assert f"{values} has" in caplog.text
    np.testing.assert_array_equal(np.array(again), expected)
