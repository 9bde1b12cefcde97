from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import cv2
import numpy as np

from lvseg.report import FONT, FONT_SCALE, LINE, _text, histogram_figure, overlay, pyplot, wrapped


def _canvas() -> np.ndarray:
    return np.full((30, 200, 3), 255, np.uint8)


def test_labels_drawn_from_any_thread_are_opencvs_own() -> None:
    drawn, expected = _canvas(), _canvas()
    worker = threading.Thread(target=_text, args=(drawn, "ES 0X12 Dice 0.50", 3, 12))
    worker.start()
    worker.join()
    cv2.putText(expected, "ES 0X12 Dice 0.50", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    assert np.array_equal(drawn, expected) and (drawn != 255).any()


def _draw_in_child() -> None:
    _text(_canvas(), "child", 3, 12)


def test_a_forked_child_draws_labels_too() -> None:
    """The child inherits the label thread's executor but not the thread: without a new one, it hung."""
    _text(_canvas(), "parent", 3, 12)  # the parent's thread exists before the fork
    child = multiprocessing.get_context("fork").Process(target=_draw_in_child)
    child.start()
    child.join(30)
    alive = child.is_alive()
    child.kill()
    assert not alive and child.exitcode == 0


def test_a_long_title_wraps_to_the_pictures_width_and_loses_no_word(tmp_path: Path) -> None:
    title = "demo-dinov2_probe-20261130-052247 - SYNTHETIC data (lvseg synth): cartoons, not echocardiograms; " \
            "RANDOMLY initialised backbone (tiny) (val)"
    lines = wrapped(title, 224 - 6)
    assert " ".join(lines) == title and len(lines) > 2
    assert all(cv2.getTextSize(line, FONT, FONT_SCALE, 1)[0][0] <= 218 for line in lines)
    images, masks = np.zeros((2, 112, 112, 3), np.uint8), np.zeros((2, 112, 112), bool)
    for text, path in ((title, tmp_path / "long.png"), ("short", tmp_path / "short.png")):
        overlay(images, masks, masks, np.array(["a", "a"]), path, text)
    long, short = cv2.imread(str(tmp_path / "long.png")), cv2.imread(str(tmp_path / "short.png"))
    assert long.shape[0] - short.shape[0] == LINE * (len(lines) - 1)  # room for every line
    assert all((long[LINE * n:LINE * (n + 1)] < 128).any() for n in range(len(lines)))  # each one drawn


def test_the_dice_histogram_counts_whole_frames() -> None:
    """Six videos put at most three frames in a bin: matplotlib ticked 0.5, 1.5 and 2.5 frames."""
    plt = pyplot()
    dice = np.array([0.73, 0.74, 0.77, 0.78, 0.77, 0.74, 0.67, 0.85, 0.70, 0.82, 0.86, 0.67])
    fig = histogram_figure(plt, dice, np.array(["ES"] * 6 + ["ED"] * 6), "six videos")
    try:
        ticks = fig.axes[0].get_yticks()
        assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks), ticks
    finally:
        plt.close(fig)
