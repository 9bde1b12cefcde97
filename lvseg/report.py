"""Evaluation outputs of a trained model: metrics JSON, per-video Dice CSV, Dice histogram and an
overlay of predicted against traced masks. Each output says when the model or data is a toy."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lvseg.metrics import dice_from_counts, overlap_counts, per_video_dice

OVERLAY_VIDEOS = 6
FONT, FONT_SCALE, LINE = cv2.FONT_HERSHEY_SIMPLEX, 0.36, 15  # labels' font; a line of them is 15 px


def _new_text_thread() -> None:
    """OpenCV 5 sets up its font on the first putText of each thread (~30 ms on 2 cores), and Ray
    Tune runs every search trial on a new thread: labels are drawn on one long-lived thread
    instead. A forked child gets a new one: it inherits the executor but not its thread, and its
    labels would wait for that thread forever."""
    global _TEXT_THREAD
    _TEXT_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lvseg-text")


_new_text_thread()
os.register_at_fork(after_in_child=_new_text_thread)


def split_report(split: str, metrics: dict[str, float], predicted: np.ndarray, masks: np.ndarray,
                 phases: np.ndarray, videos: np.ndarray, out: Path, title: str) -> dict[str, float]:
    """Per-video CSV and histogram for one split (``metrics`` carry its pooled Dice and interval)."""
    counts = overlap_counts(predicted, masks)
    low, high = metrics[f"{split}_dice_ci_low"], metrics[f"{split}_dice_ci_high"]
    per_video_dice(videos, phases, counts).to_csv(out / f"{split}_per_video_dice.csv", index=False)
    dice_histogram(dice_from_counts(counts), phases, out / f"{split}_dice_histogram.png",
                   f"{title}\n{split}: pooled Dice {metrics[f'{split}_dice']:.3f} "
                   f"(95% CI {low:.3f}-{high:.3f}), {len(masks) // 2} videos")
    return metrics


def pyplot():
    """matplotlib's pyplot, headless (no display on servers or CI), imported where a chart is drawn:
    it costs ~0.7 s, which a trial worker that draws none should not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def dice_histogram(dice: np.ndarray, phases: np.ndarray, path: Path, title: str) -> None:
    plt = pyplot()
    fig = histogram_figure(plt, dice, phases, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def histogram_figure(plt: Any, dice: np.ndarray, phases: np.ndarray, title: str) -> Any:
    """Dice per frame, ES and ED side by side, counted in whole frames."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(0, 1, 26)
    ax.hist([dice[phases == "ES"], dice[phases == "ED"]], bins=bins, label=["ES", "ED"],
            color=["#1f77b4", "#ff7f0e"])
    ax.yaxis.get_major_locator().set_params(integer=True)  # a few videos gave ticks at 0.5 frame
    ax.set_xlabel("Dice per frame")
    ax.set_ylabel("frames")
    ax.legend()
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def overlay(images: np.ndarray, predicted: np.ndarray, masks: np.ndarray, videos: np.ndarray,
            path: Path, title: str, scale: int = 2, prompts: list | None = None) -> None:
    """ES/ED frames of the first videos (columns), traced LV outlined in red, predicted in green,
    Dice above each frame; SAM ``prompts`` (one per frame) drawn in yellow (LV points, box) and
    blue (background points). Drawn with OpenCV: ~10 ms, cheap enough for every search trial."""
    count = min(OVERLAY_VIDEOS, len(images) // 2)
    size = images.shape[1] * scale
    legend = "red: traced LV   green: predicted" + ("   yellow: LV points/box   blue: background points"
                                                     if prompts is not None else "")
    lines = [*wrapped(title, count * size - 6), *wrapped(legend, count * size - 6)]
    label, header = 16, LINE * len(lines) + 4
    canvas = np.full((header + 2 * (size + label), count * size, 3), 255, np.uint8)
    for column in range(count):
        for row, phase in enumerate(("ES", "ED")):
            index = 2 * column + row
            tile = cv2.resize(np.ascontiguousarray(images[index]), (size, size), interpolation=cv2.INTER_NEAREST)
            for mask, colour in ((masks[index], (255, 59, 48)), (predicted[index], (52, 199, 89))):
                big = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
                contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(tile, contours, -1, colour, 1)
            if prompts is not None:
                _draw_prompt(tile, prompts[index], scale)
            score = dice_from_counts(overlap_counts(predicted[index], masks[index]))[0]
            top = header + row * (size + label)
            _text(canvas, f"{phase} {str(videos[index])[:8]} Dice {score:.2f}", column * size + 3, top + 12)
            canvas[top + label: top + label + size, column * size:(column + 1) * size] = tile
    for number, line in enumerate(lines):
        _text(canvas, line, 3, LINE * number + 13)
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


def wrapped(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` pixels as :func:`_text` draws them, broken between
    words (a word wider than that gets a line of its own): a title's caveats ("RANDOMLY
    initialised backbone") must not be cut off a narrow picture."""
    lines = [""]
    for word in text.split(" "):  # runs of spaces kept (the legend spaces its items)
        longer = f"{lines[-1]} {word}".lstrip()
        if lines[-1] and _text_width(longer) > width:
            lines.append(word)
        else:
            lines[-1] = longer
    return lines


def _draw_prompt(tile: np.ndarray, prompt, scale: int) -> None:
    """Points are (x, y) = (column, row), as OpenCV draws them too."""
    if prompt.box is not None:
        x0, y0, x1, y1 = (np.asarray(prompt.box) * scale).round().astype(int)
        cv2.rectangle(tile, (x0, y0), (x1, y1), (255, 214, 10), 1)
    for (x, y), label in zip(np.asarray(prompt.points) * scale, prompt.labels, strict=True):
        cv2.circle(tile, (round(x), round(y)), 3, (255, 214, 10) if label == 1 else (10, 132, 255), -1)


def _text(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    _TEXT_THREAD.submit(cv2.putText, canvas, text, (x, y), FONT, FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA).result()


def _text_width(text: str) -> int:
    return _TEXT_THREAD.submit(cv2.getTextSize, text, FONT, FONT_SCALE, 1).result()[0][0]


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    path.write_text(json.dumps(metrics, indent=1, default=float) + "\n")
