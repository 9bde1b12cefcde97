from __future__ import annotations

import numpy as np
import pytest

from lvseg.echonet import trace_mask
from lvseg.prompts import (
    MASK_CHOICES,
    STRATEGIES,
    Options,
    Prior,
    Prompt,
    Target,
    make_prompt,
    mask_box_and_centre,
    train_priors,
)

SHAPE = (112, 112)
RNG = np.random.default_rng(0)  # unused without jitter


def _options(**changes) -> Options:
    """The config's defaults, changed where a test says."""
    return Options(**{"offset": 10.0, "margin": 5.0, "k": 3, "m": 4, **changes})


def _prompt(name: str, target: Target, options: Options) -> Prompt:
    return make_prompt(name, target, options, SHAPE, jitter=0.0, rng=RNG)


def _rectangle(x0: float, y0: float, x1: float, y1: float, chords: int = 20) -> np.ndarray:
    """A tracing of a tall rectangle: long axis down its middle, chords left wall (X1) to right (X2)."""
    ys = np.linspace(y0, y1, chords)
    return np.array([[(x0 + x1) / 2, y0, (x0 + x1) / 2, y1]] + [[x0, y, x1, y] for y in ys])


ASYMMETRIC = _rectangle(10, 40, 20, 100)  # narrow and tall, far from the diagonal: (x, y) != (y, x)
PRIOR = Prior(np.array([30.0, 20.0, 60.0, 80.0]), np.array([45.0, 50.0]), 900.0)


def _target(tracing: np.ndarray = ASYMMETRIC, predicted: np.ndarray | None = None) -> Target:
    mask = trace_mask(tracing, *SHAPE)
    return Target(tracing, mask, "ED", PRIOR, mask if predicted is None else predicted)


def _inside(prompt) -> bool:
    ok = (prompt.points >= 0).all() and (prompt.points[:, 0] <= 111).all() and (prompt.points[:, 1] <= 111).all()
    if prompt.box is not None:
        ok &= (prompt.box >= 0).all() and (prompt.box <= 111).all() and (prompt.box[:2] <= prompt.box[2:]).all()
    return bool(ok)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("jitter", [0.0, 4.0])
def test_every_strategy_prompts_inside_the_frame_for_every_traced_frame(small_store, name, jitter) -> None:
    train = small_store.frames("train")
    priors = train_priors(train.masks, train.phases)
    rng = np.random.default_rng(0)
    for video in range(len(small_store)):
        for phase_index, phase in enumerate(("ES", "ED")):
            rows = np.asarray(small_store.tracings[video, phase_index])
            rows = rows[~np.isnan(rows).any(axis=1)]
            mask = np.asarray(small_store.masks[video, phase_index])
            target = Target(rows, mask, phase, priors[phase], mask)
            prompt = make_prompt(name, target, _options(), SHAPE, jitter=jitter, rng=rng)
            assert _inside(prompt), (name, prompt)
            assert len(prompt.points) or prompt.box is not None
            assert set(prompt.labels.tolist()) <= {0, 1} and len(prompt.labels) == len(prompt.points)


def test_points_are_x_then_y() -> None:
    (x, y), = _prompt("center", _target(), _options()).points
    assert (x, y) == (15.0, 70.0)
    box = _prompt("box", _target(), _options(margin=2)).box
    np.testing.assert_allclose(box, [8, 38, 22, 102])
    _, centre = mask_box_and_centre(trace_mask(ASYMMETRIC, *SHAPE))
    assert abs(centre[0] - 15) < 1.5 and abs(centre[1] - 70) < 1.5  # argwhere's (row, col) flipped


def test_seed_one_point_is_the_long_axis_midpoint() -> None:
    prompt = _prompt("seed_one_point", _target(), _options(offset=99, k=7))
    np.testing.assert_allclose(prompt.points, [[15, 70]])
    assert prompt.labels.tolist() == [1] and prompt.box is None


def test_seed_two_point_adds_two_collinear_background_points_outside_the_lv() -> None:
    target = _target()
    prompt = _prompt("seed_two_point", target, _options(offset=99))  # preset ignores options
    assert prompt.labels.tolist() == [1, 0, 0]
    centre, left, right = prompt.points
    np.testing.assert_allclose(centre, [15, 70])
    a, b = left - centre, right - centre
    assert a[0] * b[1] - a[1] * b[0] == pytest.approx(0, abs=1e-9)  # one line through the centre
    np.testing.assert_allclose(left, [0, 70])  # 10 px beyond the x=10 wall
    np.testing.assert_allclose(right, [30, 70])  # 10 px beyond the x=20 wall
    for x, y in (left, right):
        assert not target.mask[round(y), round(x)]


def test_k_points_put_foreground_inside_and_the_ring_outside() -> None:
    target = _target()
    prompt = _prompt("k_points", target, _options(k=4, m=6, offset=5))
    inside = prompt.points[prompt.labels == 1]
    ring = prompt.points[prompt.labels == 0]
    assert len(inside) == 4 and len(ring) == 6
    assert all(target.mask[round(y), round(x)] for x, y in inside)
    assert not any(target.mask[round(y), round(x)] for x, y in ring)


def test_automatic_strategies_ignore_the_tracing() -> None:
    other = _target(_rectangle(60, 20, 90, 60))
    for name in ("prior_box", "prior_point"):
        assert np.array_equal(_prompt(name, _target(), _options()).points,
                              _prompt(name, other, _options()).points)
    np.testing.assert_allclose(_prompt("prior_point", other, _options()).points, [[45, 50]])


def test_from_model_uses_the_predicted_mask_or_falls_back_to_the_prior() -> None:
    predicted = np.zeros(SHAPE, bool)
    predicted[30:50, 70:90] = True  # rows 30-49, columns 70-89
    prompt = _prompt("from_model", _target(predicted=predicted), _options(margin=0))
    np.testing.assert_allclose(prompt.box, [70, 30, 89, 49])
    np.testing.assert_allclose(prompt.points, [[79.5, 39.5]])
    fallback = _prompt("from_model", _target(predicted=np.zeros(SHAPE, bool)), _options(margin=0))
    np.testing.assert_allclose(fallback.box, PRIOR.box)


def test_jitter_is_seeded_and_moves_points() -> None:
    def prompt(seed: int):
        return make_prompt("k_points", _target(), _options(), SHAPE, jitter=3.0, rng=np.random.default_rng(seed)).points

    assert np.array_equal(prompt(1), prompt(1)) and not np.array_equal(prompt(1), prompt(2))
    assert not np.array_equal(prompt(1), _prompt("k_points", _target(), _options()).points)


@pytest.mark.parametrize("name", sorted(MASK_CHOICES))
def test_every_mask_choice_picks_a_valid_mask(name: str) -> None:
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :2, :2], masks[1, :5, :5], masks[2] = True, True, True  # areas 4, 25, 100
    index = MASK_CHOICES[name](masks, np.array([0.2, 0.9, 0.5]), Prior(np.zeros(4), np.zeros(2), 30.0))
    expected = {"best_score": 1, "index0": 0, "index1": 1, "index2": 2, "smallest": 0, "area_prior": 1}
    assert index == expected[name]


def test_train_priors_average_the_train_masks(small_store) -> None:
    train = small_store.frames("train")
    priors = train_priors(train.masks, train.phases)
    assert priors["ES"].area < priors["ED"].area
    x0, y0, x1, y1 = priors["ED"].box
    assert 0 <= x0 < priors["ED"].centre[0] < x1 <= 111 and 0 <= y0 < priors["ED"].centre[1] < y1 <= 111
