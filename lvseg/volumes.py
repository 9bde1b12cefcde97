"""LV volumes and ejection fraction, from masks (area-length) and from tracings (discs).

Units: ``spacing`` is the side of one pixel (e.g. cm); volumes come out in spacing³ (cm³ = mL).
EF is a ratio of volumes, so the spacing cancels from it.

Empty or degenerate inputs (defined, never flattering):
- an empty mask has volume 0;
- EF is 100·(EDV − ESV)/EDV; when EDV is 0 (an empty ED mask) the EF is defined as 0 %, so a
  model that finds no ventricle is charged the whole true EF as error rather than skipped.
"""

from __future__ import annotations

import cv2
import numpy as np


def mask_long_axis(mask: np.ndarray) -> float:
    """Longest distance across the mask, in pixels: the largest distance between two pixel
    centres of its convex hull plus one pixel (the pixels' own extent). 0 for an empty mask."""
    points = np.argwhere(np.asarray(mask, dtype=bool))[:, ::-1].astype(np.float32)
    if len(points) == 0:
        return 0.0
    hull = cv2.convexHull(points).reshape(-1, 2).astype(np.float64)
    gaps = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((gaps**2).sum(-1)).max()) + 1.0


def area_length_volume(mask: np.ndarray, spacing: float = 1.0, length: float | None = None) -> float:
    """Single-plane area-length volume V = 8·A² / (3·π·L) of a bool (H, W) mask.

    ``A`` is the mask's area and ``L`` its long axis (``length`` in pixels if given, else
    ``mask_long_axis``), both scaled by ``spacing``.
    """
    area_px = float(np.count_nonzero(mask))
    if area_px == 0:
        return 0.0
    length_px = mask_long_axis(mask) if length is None else float(length)
    if length_px <= 0:
        raise ValueError(f"long-axis length must be positive, got {length_px}")
    area, long_axis = area_px * spacing**2, length_px * spacing
    return 8 * area**2 / (3 * np.pi * long_axis)


def discs_volume(rows: np.ndarray, spacing: float = 1.0) -> float:
    """Method-of-discs volume of one tracing: float (N, 4) X1,Y1,X2,Y2, long axis first.

    Each chord is the diameter of a disc of height L/(N−1): V = Σ π/4 · d_i² · L/(N−1).
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 4 or len(rows) < 2:
        raise ValueError(f"a tracing needs (N>=2, 4) rows (long axis + chords), got {rows.shape}")
    lengths = np.hypot(rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]) * spacing
    long_axis, diameters = lengths[0], lengths[1:]
    return float(np.sum(np.pi / 4 * diameters**2) * long_axis / len(diameters))


def ejection_fraction(edv: np.ndarray | float, esv: np.ndarray | float) -> np.ndarray:
    """EF in percent, 100·(EDV − ESV)/EDV; 0 where EDV is 0 (see module docstring)."""
    edv, esv = np.asarray(edv, dtype=np.float64), np.asarray(esv, dtype=np.float64)
    return np.where(edv > 0, 100 * (edv - esv) / np.where(edv > 0, edv, 1.0), 0.0)


def mask_ejection_fraction(es_masks: np.ndarray, ed_masks: np.ndarray) -> np.ndarray:
    """EF (%) per video from bool (N, H, W) ES and ED masks by area-length volumes."""
    esv = np.array([area_length_volume(m) for m in es_masks])
    edv = np.array([area_length_volume(m) for m in ed_masks])
    return ejection_fraction(edv, esv)


def ef_absolute_errors(es_masks: np.ndarray, ed_masks: np.ndarray, ef_true: np.ndarray) -> np.ndarray:
    """|EF from predicted masks − reference EF| per video, in EF percentage points."""
    return np.abs(mask_ejection_fraction(es_masks, ed_masks) - np.asarray(ef_true, dtype=np.float64))
