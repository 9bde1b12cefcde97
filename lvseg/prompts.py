"""SAM prompt strategies: a registry of pure functions, (what is known of a frame) -> prompt.

Coordinates are (x, y) = (column, row) in pixels of the stored frame, as SAM expects; note that
``np.argwhere`` gives (row, column), so every mask-derived point is flipped with ``[:, ::-1]``.

From the expert tracing (a clinician's clicks, simulated):
- ``center``: one foreground point at the middle of the long axis (the seed report's one point);
- ``two_background``: that point plus two background points on the short axis through it, each
  ``offset`` px outside the wall (the seed report's three points);
- ``long_axis``: ``k`` foreground points spread along the long axis;
- ``k_points``: ``k`` foreground points at chord midpoints, ``m`` background points on a ring
  ``offset`` px outside the tracing;
- ``box``: the tracing's bounding box grown by ``margin``; ``box_center``: box and centre point.
Without the tracing (fully automatic):
- ``prior_box`` / ``prior_point``: the train split's average LV box / centre for the phase;
- ``from_model``: box and centre of a trained baseline or probe's predicted mask.
Presets: ``seed_one_point`` and ``seed_two_point`` reproduce the seed report's protocols.
Every strategy can add click noise (``jitter`` px, seeded); prompts are clipped to the frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from lvseg.registry import lookup

SEED_OFFSET = 10.0  # px outside the wall for the seed protocol's background points


@dataclass(frozen=True)
class Prompt:
    """``points`` float (P, 2) as (x, y); ``labels`` int (P,), 1 = LV, 0 = background; ``box``
    float (4,) as XYXY, or None."""

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None = None


@dataclass(frozen=True)
class Prior:
    """The train split's average LV for one phase: box XYXY, centre (x, y), area in pixels."""

    box: np.ndarray
    centre: np.ndarray
    area: float


@dataclass(frozen=True)
class Target:
    """What a strategy may look at for one frame. ``tracing`` float (N, 4) X1,Y1,X2,Y2 (long axis
    first), ``mask`` bool (H, W) traced LV, ``predicted`` bool (H, W) from a model, or None."""

    tracing: np.ndarray
    mask: np.ndarray
    phase: str
    prior: Prior
    predicted: np.ndarray | None = None


@dataclass(frozen=True, kw_only=True)
class Options:
    """A strategy's knobs (their defaults live in the config): ``offset`` px beyond the wall for
    background points, ``margin`` px around boxes, ``k`` foreground and ``m`` background points."""

    offset: float
    margin: float
    k: int
    m: int


Strategy = Callable[[Target, Options], Prompt]


def _fg(*points: np.ndarray) -> Prompt:
    return Prompt(np.array(points, dtype=float), np.ones(len(points), dtype=int))


def long_axis_ends(tracing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return tracing[0, :2].astype(float), tracing[0, 2:].astype(float)


def axis_centre(tracing: np.ndarray) -> np.ndarray:
    start, end = long_axis_ends(tracing)
    return (start + end) / 2


def center(target: Target, options: Options) -> Prompt:
    return _fg(axis_centre(target.tracing))


def two_background(target: Target, options: Options) -> Prompt:
    """Centre, plus two background points on the short axis through it (perpendicular to the long
    axis), each ``offset`` px beyond the wall; the wall is where the nearest chord ends."""
    centre, chords = axis_centre(target.tracing), target.tracing[1:]
    start, end = long_axis_ends(target.tracing)
    axis = (end - start) / max(np.linalg.norm(end - start), 1e-9)
    across = np.array([-axis[1], axis[0]])  # the short axis
    middles = (chords[:, :2] + chords[:, 2:]) / 2
    chord = chords[np.argmin(np.linalg.norm(middles - centre, axis=1))]
    reach = [abs(float(np.dot(wall - centre, across))) + options.offset for wall in (chord[:2], chord[2:])]
    outside = [centre - across * reach[0], centre + across * reach[1]]
    if np.dot(chord[:2] - centre, across) > 0:  # the X1 wall lies on the +across side
        outside = [centre + across * reach[0], centre - across * reach[1]]
    return Prompt(np.array([centre, *outside]), np.array([1, 0, 0]))


def long_axis(target: Target, options: Options) -> Prompt:
    start, end = long_axis_ends(target.tracing)
    fractions = np.arange(1, options.k + 1) / (options.k + 1)
    return Prompt(start + np.outer(fractions, end - start), np.ones(options.k, dtype=int))


def k_points(target: Target, options: Options) -> Prompt:
    chords = target.tracing[1:]
    chosen = chords[np.linspace(0, len(chords) - 1, options.k + 2).round().astype(int)[1:-1]]
    inside = (chosen[:, :2] + chosen[:, 2:]) / 2
    outline = np.vstack([chords[:, :2], chords[:, 2:]])
    middle = outline.mean(axis=0)
    radius = np.linalg.norm(outline - middle, axis=1).max() + options.offset
    angles = 2 * np.pi * np.arange(options.m) / max(options.m, 1)
    ring = middle + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return Prompt(np.vstack([inside, ring]), np.r_[np.ones(options.k, int), np.zeros(options.m, int)])


def _grow(box: np.ndarray, margin: float) -> np.ndarray:
    return np.asarray(box, dtype=float) + np.array([-margin, -margin, margin, margin])


def tracing_box(tracing: np.ndarray) -> np.ndarray:
    outline = np.vstack([tracing[1:, :2], tracing[1:, 2:]])
    return np.r_[outline.min(axis=0), outline.max(axis=0)]


def box(target: Target, options: Options) -> Prompt:
    return Prompt(np.zeros((0, 2)), np.zeros(0, dtype=int), _grow(tracing_box(target.tracing), options.margin))


def box_center(target: Target, options: Options) -> Prompt:
    return Prompt(_fg(axis_centre(target.tracing)).points, np.ones(1, int),
                  _grow(tracing_box(target.tracing), options.margin))


def prior_box(target: Target, options: Options) -> Prompt:
    return Prompt(np.zeros((0, 2)), np.zeros(0, dtype=int), _grow(target.prior.box, options.margin))


def prior_point(target: Target, options: Options) -> Prompt:
    return _fg(target.prior.centre)


def mask_box_and_centre(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XYXY box and (x, y) centroid of a bool mask (argwhere gives rows first: flipped here)."""
    xy = np.argwhere(mask)[:, ::-1].astype(float)
    return np.r_[xy.min(axis=0), xy.max(axis=0)], xy.mean(axis=0)


def from_model(target: Target, options: Options) -> Prompt:
    """Box and centre of the model's predicted mask; the prior box when it predicted nothing."""
    if target.predicted is None or not target.predicted.any():
        return Prompt(_fg(target.prior.centre).points, np.ones(1, int), _grow(target.prior.box, options.margin))
    found_box, centre = mask_box_and_centre(target.predicted)
    return Prompt(_fg(centre).points, np.ones(1, int), _grow(found_box, options.margin))


def seed_one_point(target: Target, options: Options) -> Prompt:
    """The seed report's one point: ``center``, whatever the options."""
    return center(target, options)


def seed_two_point(target: Target, options: Options) -> Prompt:
    """The seed report's three points: ``two_background`` at SEED_OFFSET, whatever the options."""
    return two_background(target, replace(options, offset=SEED_OFFSET))


STRATEGIES: dict[str, Strategy] = {
    "center": center, "two_background": two_background, "long_axis": long_axis, "k_points": k_points,
    "box": box, "box_center": box_center, "prior_box": prior_box, "prior_point": prior_point,
    "from_model": from_model, "seed_one_point": seed_one_point, "seed_two_point": seed_two_point,
}


def make_prompt(name: str, target: Target, options: Options, shape: tuple[int, int], *, jitter: float,
                rng: np.random.Generator) -> Prompt:
    """Run a strategy, add ``jitter`` px of click noise from ``rng``, and clip every coordinate
    into the (H, W) frame."""
    prompt = lookup(STRATEGIES, name, "prompt strategy")(target, options)
    points, box_ = prompt.points.astype(float), None if prompt.box is None else prompt.box.astype(float)
    if jitter > 0:
        points = points + rng.normal(0, jitter, points.shape)
        box_ = None if box_ is None else box_ + rng.normal(0, jitter, 4)
    height, width = shape
    limit = np.array([width - 1, height - 1], dtype=float)
    points = np.clip(points, 0, limit)
    if box_ is not None:
        corners = np.clip(box_.reshape(2, 2), 0, limit)
        box_ = np.r_[corners.min(axis=0), corners.max(axis=0)]
    return Prompt(points, prompt.labels, box_)


# ---- which of SAM's masks to keep ---------------------------------------------------------------

def _best_score(masks: np.ndarray, scores: np.ndarray, prior: Prior) -> int:
    return int(np.argmax(scores))


def _smallest(masks: np.ndarray, scores: np.ndarray, prior: Prior) -> int:
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    nonempty = np.flatnonzero(areas > 0)
    return int(nonempty[np.argmin(areas[nonempty])]) if len(nonempty) else 0


def _area_prior(masks: np.ndarray, scores: np.ndarray, prior: Prior) -> int:
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    return int(np.argmin(np.abs(areas - prior.area)))


def _index(i: int) -> Callable[[np.ndarray, np.ndarray, Prior], int]:
    return lambda masks, scores, prior: min(i, len(masks) - 1)


MASK_CHOICES: dict[str, Callable[[np.ndarray, np.ndarray, Prior], int]] = {
    "best_score": _best_score, "index0": _index(0), "index1": _index(1), "index2": _index(2),
    "smallest": _smallest, "area_prior": _area_prior,
}


def train_priors(masks: np.ndarray, phases: np.ndarray) -> dict[str, Prior]:
    """Average LV box, centre and area per phase over the train split's bool (N, H, W) masks."""
    priors = {}
    for phase in ("ES", "ED"):
        boxes, centres = zip(*(mask_box_and_centre(m) for m in masks[phases == phase] if m.any()), strict=True)
        priors[phase] = Prior(np.mean(boxes, axis=0), np.mean(centres, axis=0),
                              float(masks[phases == phase].sum(axis=(1, 2)).mean()))
    return priors
