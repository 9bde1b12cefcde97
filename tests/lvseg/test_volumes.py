from __future__ import annotations

import numpy as np
import pytest
import skimage.draw

from lvseg.volumes import (
    area_length_volume,
    discs_volume,
    ef_absolute_errors,
    ejection_fraction,
    mask_ejection_fraction,
    mask_long_axis,
)


def _ellipse(semi_major: float, semi_minor: float, size: int = 200) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    r, c = skimage.draw.ellipse(size / 2, size / 2, semi_major, semi_minor, (size, size))
    mask[r, c] = True
    return mask


def test_area_length_recovers_a_prolate_spheroid() -> None:
    # area-length is exact for an ellipse seen along its long axis: V = 4/3·π·a·b²
    a, b = 60.0, 25.0
    volume = area_length_volume(_ellipse(a, b), length=2 * a)
    assert volume == pytest.approx(4 / 3 * np.pi * a * b**2, rel=0.02)  # pixelation
    assert area_length_volume(_ellipse(a, b)) == pytest.approx(volume, rel=0.03)  # measured axis


def test_spacing_scales_volume_by_its_cube() -> None:
    mask = _ellipse(30, 12, 100)
    assert area_length_volume(mask, spacing=0.5) == pytest.approx(area_length_volume(mask) * 0.125)


def test_long_axis_of_a_line_and_of_nothing() -> None:
    line = np.zeros((10, 10), bool)
    line[2, 1:8] = True
    assert mask_long_axis(line) == pytest.approx(7.0)
    assert mask_long_axis(np.zeros((5, 5), bool)) == 0.0
    assert area_length_volume(np.zeros((5, 5), bool)) == 0.0


def test_discs_volume_of_a_cylinder() -> None:
    # 10 chords of diameter 4 over a long axis of 20: a cylinder, π·2²·20
    rows = np.array([[0, 0, 0, 20]] + [[-2, y, 2, y] for y in range(1, 11)], dtype=float)
    assert discs_volume(rows) == pytest.approx(np.pi * 4 * 20)
    assert discs_volume(rows, spacing=0.1) == pytest.approx(np.pi * 4 * 20 * 1e-3)


def test_ejection_fraction_and_its_empty_convention() -> None:
    np.testing.assert_allclose(ejection_fraction([100, 80, 0], [40, 80, 0]), [60, 0, 0])


def test_ef_from_masks_is_independent_of_scale_and_errors_are_absolute() -> None:
    ed, es = _ellipse(60, 25), _ellipse(50, 18)
    ef = mask_ejection_fraction(es[None], ed[None])[0]
    assert 40 < ef < 70
    errors = ef_absolute_errors(es[None], ed[None], np.array([ef + 5]))
    assert errors[0] == pytest.approx(5)
    empty = np.zeros_like(ed)
    assert ef_absolute_errors(es[None], empty[None], np.array([55.0]))[0] == pytest.approx(55)
