from __future__ import annotations

import numpy as np
import pytest

from lvseg.metrics import (
    bootstrap_pooled_dice,
    counts_from_table,
    dice,
    dice_from_counts,
    iou,
    overlap_counts,
    paired_dice_difference,
    per_video_dice,
    pooled_dice,
    summarise,
    summary_keys,
)


def _box(shape: tuple[int, int], r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[r0:r1, c0:c1] = True
    return mask


def test_dice_and_iou_of_half_overlapping_boxes() -> None:
    a, b = _box((10, 10), 0, 4, 0, 4), _box((10, 10), 0, 4, 2, 6)  # 16 px each, 8 shared
    assert dice(a, b) == pytest.approx(2 * 8 / 32)
    assert iou(a, b) == pytest.approx(8 / 24)


def test_empty_mask_conventions() -> None:
    empty, full = np.zeros((4, 4), bool), np.ones((4, 4), bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(empty, full) == 0.0 and iou(full, empty) == 0.0
    assert pooled_dice(overlap_counts(np.zeros((3, 4, 4), bool), np.zeros((3, 4, 4), bool))) == 1.0


def test_pooled_dice_weights_pixels_not_images() -> None:
    small_miss = (np.zeros((8, 8), bool), _box((8, 8), 0, 1, 0, 1))      # dice 0, 1 pixel
    large_hit = (_box((8, 8), 0, 8, 0, 8), _box((8, 8), 0, 8, 0, 8))     # dice 1, 64 pixels
    counts = overlap_counts(np.stack([small_miss[0], large_hit[0]]), np.stack([small_miss[1], large_hit[1]]))
    assert dice_from_counts(counts).mean() == pytest.approx(0.5)
    assert pooled_dice(counts) == pytest.approx(128 / 129)


def test_overlap_counts_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        overlap_counts(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_bootstrap_interval_is_deterministic_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    counts = np.stack([rng.integers(50, 90, 200), rng.integers(90, 110, 200), rng.integers(90, 110, 200)], 1)
    estimate, low, high = bootstrap_pooled_dice(counts, samples=2000, seed=1)
    assert estimate == pooled_dice(counts)
    assert low < estimate < high and high - low < 0.05
    assert bootstrap_pooled_dice(counts, samples=2000, seed=1) == (estimate, low, high)


def test_bootstrap_rejects_no_videos_odd_frames_and_bad_levels() -> None:
    with pytest.raises(ValueError, match="no videos"):
        bootstrap_pooled_dice(np.zeros((0, 3), np.int64))
    with pytest.raises(ValueError, match="two frames"):
        bootstrap_pooled_dice(np.ones((3, 3), np.int64))
    with pytest.raises(ValueError, match="level"):
        bootstrap_pooled_dice(np.ones((4, 3), np.int64), level=1.5)


def test_bootstrap_resamples_videos_not_frames() -> None:
    """ES and ED of one video move together. The same frames, paired alike (a good heart's two
    frames both good) or paired across hearts, resampled by frame would give one interval; by
    video, the alike pairs vary more and give the wider one."""
    rng = np.random.default_rng(3)
    videos = np.stack([rng.integers(20, 90, 100), np.full(100, 100), np.full(100, 100)], 1)
    frames = np.repeat(videos, 2, axis=0)  # each video's ES and ED alike
    _, low, high = bootstrap_pooled_dice(frames, samples=4000, seed=0)
    halves = frames.copy()
    halves[1::2] = frames[::-1][0::2]  # break the pairing: ED from another heart
    _, paired_low, paired_high = bootstrap_pooled_dice(halves, samples=4000, seed=0)
    assert high - low > paired_high - paired_low


def test_paired_difference_tells_equal_from_better() -> None:
    rng = np.random.default_rng(4)
    traced = rng.integers(80, 120, 400)
    good = np.stack([traced - rng.integers(0, 10, 400), traced, traced], 1)
    worse = np.stack([good[:, 0] - rng.integers(5, 15, 400), traced, traced], 1)
    same, low, high = paired_dice_difference(good, good.copy(), samples=2000)
    assert same == 0 and low <= 0 <= high
    difference, low, high = paired_dice_difference(good, worse, samples=2000)
    assert difference > 0 and low > 0


def test_summarise_reports_pooled_per_phase_and_mean() -> None:
    counts = np.array([[8, 10, 10], [0, 0, 6], [20, 20, 20], [5, 10, 10]])
    phases = np.array(["ES", "ED", "ES", "ED"])
    result = summarise(counts, phases, prefix="val_")
    assert result["val_dice"] == pytest.approx(2 * 33 / 86)
    assert result["val_dice_es"] == pytest.approx(2 * 28 / 60)
    assert result["val_dice_ed"] == pytest.approx(2 * 5 / 26)
    assert result["val_dice_mean"] == pytest.approx((0.8 + 0 + 1 + 0.5) / 4)
    assert result["val_dice_ci_low"] < result["val_dice"] < result["val_dice_ci_high"]
    assert set(result) == {"val_dice", "val_dice_ci_low", "val_dice_ci_high", "val_dice_es", "val_dice_ed",
                           "val_dice_mean", "val_iou_mean"}
    assert set(result) == summary_keys("val_")


def test_the_per_video_table_gives_the_counts_back() -> None:
    counts = np.array([[8, 10, 10], [0, 0, 6], [20, 20, 20], [5, 10, 10]])
    table = per_video_dice(np.array(["b", "b", "a", "a"]), np.array(["ES", "ED", "ES", "ED"]), counts)
    np.testing.assert_array_equal(counts_from_table(table), counts)


def test_per_video_table_has_one_row_per_video_in_order() -> None:
    counts = np.array([[8, 10, 10], [0, 0, 6], [20, 20, 20], [5, 10, 10]])
    table = per_video_dice(np.array(["b", "b", "a", "a"]), np.array(["ES", "ED", "ES", "ED"]), counts)
    assert table["video"].tolist() == ["b", "a"]
    assert table["dice_es"].tolist() == pytest.approx([0.8, 1.0])
    assert table["dice_ed"].tolist() == pytest.approx([0.0, 0.5])
    assert table["dice_mean"].tolist() == pytest.approx([0.4, 0.75])
    assert table["traced_area_ed"].tolist() == [6, 10]
