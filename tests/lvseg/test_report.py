from __future__ import annotations

import multiprocessing
import threading

import cv2
import numpy as np

from lvseg.report import _text


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
