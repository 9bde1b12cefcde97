"""Overlap metrics, reported the way the field reports them.

Every metric is computed from per-image counts ``(intersection, predicted area, traced area)``
(int64, shape (N, 3)), so pooled, per-image, per-phase and bootstrap figures all come from one
pass over the masks.

Empty masks (defined, not special-cased away):
- per-image Dice and IoU are 1.0 when prediction and tracing are both empty (they agree that
  there is nothing to segment) and 0.0 when exactly one is empty;
- pooled Dice over a set whose masks are all empty is 1.0 for the same reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BOOTSTRAP_SAMPLES = 10_000  # as the reference's bootstrap
BOOTSTRAP_LEVEL = 0.95


def overlap_counts(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image (intersection, |pred|, |target|) for bool masks (N, H, W) or (H, W) -> (N, 3)."""
    pred = np.asarray(pred, dtype=bool)
    target = np.asarray(target, dtype=bool)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and tracing {target.shape} differ in shape")
    if pred.ndim == 2:
        pred, target = pred[None], target[None]
    axes = tuple(range(1, pred.ndim))
    return np.stack(
        [(pred & target).sum(axes), pred.sum(axes), target.sum(axes)], axis=1
    ).astype(np.int64)


def dice_from_counts(counts: np.ndarray) -> np.ndarray:
    """Per-image Dice 2I/(A+B) from (N, 3) counts; 1.0 where both masks are empty."""
    counts = np.atleast_2d(counts)
    total = counts[:, 1] + counts[:, 2]
    return np.where(total == 0, 1.0, 2 * counts[:, 0] / np.maximum(total, 1))


def iou_from_counts(counts: np.ndarray) -> np.ndarray:
    """Per-image IoU I/(A+B-I) from (N, 3) counts; 1.0 where both masks are empty."""
    counts = np.atleast_2d(counts)
    union = counts[:, 1] + counts[:, 2] - counts[:, 0]
    return np.where(union == 0, 1.0, counts[:, 0] / np.maximum(union, 1))


def pooled_dice(counts: np.ndarray) -> float:
    """2·ΣI / (ΣA + ΣB) over all images, the figure the EchoNet reference reports."""
    intersection, pred_area, target_area = np.atleast_2d(counts).sum(axis=0)
    total = pred_area + target_area
    return 1.0 if total == 0 else float(2 * intersection / total)


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice of one pair of bool (H, W) masks."""
    return float(dice_from_counts(overlap_counts(pred, target))[0])


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of one pair of bool (H, W) masks."""
    return float(iou_from_counts(overlap_counts(pred, target))[0])


def bootstrap_pooled_dice(
    counts: np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Pooled Dice with a percentile bootstrap interval, resampling images with replacement.

    Returns (estimate, lower, upper). Deterministic for a seed.
    """
    counts = np.atleast_2d(counts)
    if len(counts) == 0:
        raise ValueError("no images to bootstrap")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    draws = np.empty(samples)
    chunk = max(1, 2_000_000 // len(counts))  # bound memory: ~2M indices at a time
    for start in range(0, samples, chunk):
        index = rng.integers(0, len(counts), size=(min(chunk, samples - start), len(counts)))
        sums = counts[index].sum(axis=1)
        total = sums[:, 1] + sums[:, 2]
        draws[start:start + len(index)] = np.where(total == 0, 1.0, 2 * sums[:, 0] / np.maximum(total, 1))
    tail = (1 - level) / 2 * 100
    lower, upper = np.percentile(draws, [tail, 100 - tail])
    return pooled_dice(counts), float(lower), float(upper)


SUMMARY = ("dice", "dice_es", "dice_ed", "dice_mean", "iou_mean")  # the keys of summarise, unprefixed


def summary_keys(prefix: str = "") -> frozenset[str]:
    """The keys :func:`summarise` returns for ``prefix``."""
    return frozenset(prefix + key for key in SUMMARY)


def summarise(counts: np.ndarray, phases: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Pooled Dice overall and per phase, mean per-image Dice and IoU, as a flat dict.

    ``phases`` is a (N,) array of "ES"/"ED" aligned with ``counts``. Keys: ``{prefix}dice``,
    ``{prefix}dice_es``, ``{prefix}dice_ed``, ``{prefix}dice_mean``, ``{prefix}iou_mean``.
    """
    counts, phases = np.atleast_2d(counts), np.asarray(phases)
    result = {f"{prefix}dice": pooled_dice(counts)}
    for phase in ("ES", "ED"):
        chosen = counts[phases == phase]
        result[f"{prefix}dice_{phase.lower()}"] = pooled_dice(chosen) if len(chosen) else float("nan")
    result[f"{prefix}dice_mean"] = float(dice_from_counts(counts).mean())
    result[f"{prefix}iou_mean"] = float(iou_from_counts(counts).mean())
    return result


def per_video_dice(videos: np.ndarray, phases: np.ndarray, counts: np.ndarray) -> pd.DataFrame:
    """One row per video: dice_es, dice_ed, and their mean, plus the pixel areas behind them."""
    frame = pd.DataFrame({
        "video": np.asarray(videos),
        "phase": np.asarray(phases),
        "dice": dice_from_counts(counts),
        "pred_area": np.atleast_2d(counts)[:, 1],
        "traced_area": np.atleast_2d(counts)[:, 2],
    })
    wide = frame.pivot(index="video", columns="phase", values=["dice", "pred_area", "traced_area"])
    wide.columns = [f"{name}_{phase.lower()}" for name, phase in wide.columns]
    wide = wide.reindex(pd.unique(frame["video"]))
    wide["dice_mean"] = wide[["dice_es", "dice_ed"]].mean(axis=1)
    return wide.reset_index()
