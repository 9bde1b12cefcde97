"""A synthetic data set in the exact EchoNet-Dynamic file format, for tests and the demo.

It is *not* echocardiography: apical-four-chamber-like cartoons (sector-shaped cone with speckle,
four dark chambers with bright walls and septum, an LV that contracts and relaxes) whose LV is
exactly the polygon of its own tracing, so that a pipeline can be checked end to end without the
real data. Nothing measured on it says anything about real echo.

Geometry: the LV is described along its long axis, apex (t=0) to mitral annulus (t=1), with a
truncated-ellipse width profile. Each frame has a contraction c in [0, 1] (0 = end diastole,
1 = end systole) that shortens the axis and narrows the cavity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import skimage.draw

from lvseg.echonet import FILELIST, TRACINGS, VIDEOS, trace_mask
from lvseg.framestore import SYNTHETIC_MARKER  # lets every downstream output say "synthetic"
from lvseg.video import write_video
from lvseg.volumes import discs_volume, ejection_fraction

SIZE = 112
FPS = 50
CHORDS = 20
PIXEL_SPACING_CM = 0.14  # makes volumes land in a plausible mL range; EF does not depend on it
SPLIT_SHARES = (("TRAIN", 0.75), ("VAL", 0.125), ("TEST", 0.125))
FILELIST_HEADER = ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
                   "NumberOfFrames", "Split"]
MARKER_TEXT = "Written by `lvseg synth`: cartoons in the EchoNet-Dynamic format, not echocardiograms.\n"
CAVITY, WALL, TISSUE = 0.06, 0.72, 0.33  # mean echo brightness of blood, myocardium, surroundings
FRAMES = (40, 56)  # frames per video, drawn uniformly (both ends included): short, so tests stay fast
ECHONET_FRAMES = (100, 250)  # the same draw with EchoNet-Dynamic's mean of ~175 frames per video
SHORTEST = 8  # fewer frames may not hold a distinct ES and ED (a cycle is 18-28 frames)


@dataclass(frozen=True)
class Heart:
    """One video's anatomy and motion, drawn from the generator's random stream."""

    apex: np.ndarray        # (x, y) pixels
    axis: np.ndarray        # unit vector apex -> base
    length: float           # LV long axis at end diastole, pixels
    half_width: float       # LV cavity half-width scale at end diastole, pixels
    width_shrink: float     # fractional narrowing at end systole
    length_shrink: float    # fractional shortening at end systole
    wall: float             # myocardium thickness, pixels
    period: float           # frames per cardiac cycle
    offset: float           # phase of frame 0, frames
    frames: int
    gain: float

    @property
    def normal(self) -> np.ndarray:
        """Unit vector perpendicular to the axis, pointing to the image's left (towards the RV)."""
        return np.array([-self.axis[1], self.axis[0]])

    def contraction(self, frame: int) -> float:
        return 0.5 * (1 - np.cos(2 * np.pi * (frame + self.offset) / self.period))


def random_heart(rng: np.random.Generator, frames: tuple[int, int] = FRAMES) -> Heart:
    tilt = np.deg2rad(rng.uniform(-12, 12))
    return Heart(
        apex=np.array([SIZE * 0.55 + rng.uniform(-4, 4), 14 + rng.uniform(-3, 3)]),
        axis=np.array([np.sin(tilt), np.cos(tilt)]),
        length=rng.uniform(50, 60),
        half_width=rng.uniform(13, 17),
        width_shrink=rng.uniform(0.12, 0.38),
        length_shrink=rng.uniform(0.06, 0.15),
        wall=rng.uniform(3.0, 4.5),
        period=rng.uniform(18, 28),
        offset=rng.uniform(0, 28),
        frames=int(rng.integers(frames[0], frames[1] + 1)),
        gain=rng.uniform(0.85, 1.15),
    )


def lv_tracing(heart: Heart, c: float) -> np.ndarray:
    """EchoNet-style tracing at contraction ``c``: float (1 + CHORDS, 4), long axis first."""
    length = heart.length * (1 - heart.length_shrink * c)
    width = heart.half_width * (1 - heart.width_shrink * c)
    base = heart.apex + heart.axis * length
    t = (np.arange(CHORDS) + 0.5) / CHORDS
    centres = heart.apex + np.outer(t * length, heart.axis)
    half = width * np.sqrt(np.clip(1 - ((t - 0.62) / 0.62) ** 2, 0, None))
    left = centres + np.outer(half, heart.normal)
    right = centres - np.outer(half, heart.normal)
    rows = np.vstack([np.concatenate([heart.apex, base]), np.hstack([left, right])])
    return np.round(rows, 4)  # the CSV's precision: what is drawn is exactly what is written


def _ellipse(image: np.ndarray, centre: np.ndarray, radii: tuple[float, float], angle: float,
             value: float) -> None:
    r, c = skimage.draw.ellipse(centre[1], centre[0], radii[1], radii[0], image.shape,
                                rotation=angle)
    image[r, c] = value


def _other_chambers(heart: Heart, c: float, image: np.ndarray, value: float, grow: float) -> None:
    """RV beside the LV, atria below the annulus. Atria fill while the ventricles empty."""
    angle = -np.arctan2(heart.axis[0], heart.axis[1])
    base = heart.apex + heart.axis * heart.length
    rv_offset = heart.normal * (heart.half_width * 1.75 + heart.wall * 2)
    rv_centre = heart.apex + heart.axis * heart.length * 0.6 + rv_offset
    rv_radii = (heart.half_width * 0.8 * (1 - 0.2 * c) + grow, heart.length * 0.38 + grow)
    _ellipse(image, rv_centre, rv_radii, angle, value)
    atrium = (heart.half_width * 0.9 * (1 + 0.15 * c) + grow, 13 * (1 + 0.1 * c) + grow)
    la_centre = base + heart.axis * (atrium[1] + heart.wall * 1.5)
    _ellipse(image, la_centre, atrium, angle, value)
    _ellipse(image, la_centre + rv_offset * 0.95, (atrium[0] * 0.9, atrium[1]), angle, value)


def _cone(rng: np.random.Generator) -> np.ndarray:
    """Bool (SIZE, SIZE) ultrasound sector: apex at the top centre, ~80 degrees wide."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    top = np.array([SIZE / 2 + rng.uniform(-2, 2), -6.0])
    angle = np.arctan2(x - top[0], y - top[1])
    radius = np.hypot(x - top[0], y - top[1])
    return (np.abs(angle) < np.deg2rad(rng.uniform(38, 44))) & (radius < SIZE * 1.02)


def render_frame(heart: Heart, frame: int, cone: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One grey uint8 (SIZE, SIZE) frame."""
    c = heart.contraction(frame)
    rows = lv_tracing(heart, c)
    image = np.full((SIZE, SIZE), TISSUE)
    image *= np.linspace(1.1, 0.75, SIZE)[:, None]  # depth attenuation
    walls = trace_mask(_widen(rows, heart.wall), SIZE, SIZE)
    image[walls] = WALL
    _other_chambers(heart, c, image, WALL, heart.wall)
    _other_chambers(heart, c, image, CAVITY, 0.0)
    image[trace_mask(rows, SIZE, SIZE)] = CAVITY
    speckle = rng.rayleigh(1.0, (SIZE, SIZE)) / np.sqrt(np.pi / 2)
    image = image * heart.gain * (0.45 + 0.55 * speckle) + rng.normal(0, 0.015, image.shape)
    image[~cone] = 0.0
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _widen(rows: np.ndarray, by: float) -> np.ndarray:
    """A tracing whose chords are ``by`` pixels longer at each end and whose apex moves out by
    ``by``: the outline of cavity plus myocardium."""
    wide = rows.copy()
    chords = wide[1:]
    direction = chords[:, 2:] - chords[:, :2]
    unit = direction / np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
    chords[:, :2] -= unit * by
    chords[:, 2:] += unit * by
    axis = (rows[0, 2:] - rows[0, :2]) / np.linalg.norm(rows[0, 2:] - rows[0, :2])
    apex = rows[0, :2] - axis * by
    cap = np.concatenate([apex, apex])
    return np.vstack([wide[0], cap, chords])


def traced_frames(heart: Heart, rng: np.random.Generator) -> tuple[int, int]:
    """(ES, ED) frame indices: most contracted frame, and a most relaxed one before or after it."""
    c = np.array([heart.contraction(f) for f in range(heart.frames)])
    es = int(np.argmax(c))
    relaxed = np.flatnonzero(c <= c.min() + 0.02)
    ed = int(rng.choice(relaxed))
    return es, ed


def assign_splits(count: int, rng: np.random.Generator) -> list[str]:
    """About 75/12.5/12.5 TRAIN/VAL/TEST, with at least one VAL and one TEST when count >= 3."""
    val = max(1, round(count * SPLIT_SHARES[1][1])) if count >= 3 else 0
    test = max(1, round(count * SPLIT_SHARES[2][1])) if count >= 3 else 0
    labels = ["TRAIN"] * (count - val - test) + ["VAL"] * val + ["TEST"] * test
    return [labels[i] for i in rng.permutation(count)]


def write_synthetic(out: str | Path, videos: int = 50, seed: int = 0, frames: tuple[int, int] = FRAMES) -> Path:
    """Write a synthetic EchoNet-Dynamic folder to ``out``, each video ``frames[0]``-``frames[1]``
    frames long. Deterministic for a seed (and a range)."""
    if videos < 1:
        raise ValueError(f"videos must be at least 1, got {videos}")
    if not SHORTEST <= frames[0] <= frames[1]:
        raise ValueError(f"frames must be MIN:MAX with {SHORTEST} <= MIN <= MAX, got {frames[0]}:{frames[1]}")
    out = Path(out)
    (out / VIDEOS).mkdir(parents=True, exist_ok=True)
    (out / SYNTHETIC_MARKER).write_text(MARKER_TEXT)
    rng = np.random.default_rng(seed)
    splits = assign_splits(videos, rng)
    rows, tracings = [], []
    for index in range(videos):
        name = f"0X{rng.bytes(8).hex().upper()}"
        row, traces = _write_video(out, name, splits[index], np.random.default_rng([seed, index]), frames)
        rows.append(row)
        tracings.extend(traces)
    pd.DataFrame(rows, columns=FILELIST_HEADER).to_csv(out / FILELIST, index=False)
    pd.DataFrame(tracings, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(
        out / TRACINGS, index=False
    )
    return out


def _write_video(out: Path, name: str, split: str, rng: np.random.Generator, frames: tuple[int, int]):
    heart = random_heart(rng, frames)
    cone = _cone(rng)
    grey = np.stack([render_frame(heart, f, cone, rng) for f in range(heart.frames)])
    write_video(out / VIDEOS / f"{name}.avi", np.repeat(grey[..., None], 3, axis=-1), FPS)
    es, ed = traced_frames(heart, rng)
    es_rows = lv_tracing(heart, heart.contraction(es))
    ed_rows = lv_tracing(heart, heart.contraction(ed))
    esv = discs_volume(es_rows, PIXEL_SPACING_CM)
    edv = discs_volume(ed_rows, PIXEL_SPACING_CM)
    ef = float(ejection_fraction(edv, esv))
    row = [name, round(ef, 4), round(esv, 4), round(edv, 4), SIZE, SIZE, FPS, heart.frames, split]
    traces = [[f"{name}.avi", *r, frame] for frame, rr in ((es, es_rows), (ed, ed_rows)) for r in rr]
    return row, traces
