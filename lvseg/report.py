"""Evaluation outputs of a trained model: metrics JSON, per-video Dice CSV, Dice histogram and an
overlay of predicted against traced masks. Each output says when the model or data is a toy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lvseg.config import BaselineConfig, ProbeConfig, TrainConfig
from lvseg.framestore import FrameStore
from lvseg.metrics import bootstrap_pooled_dice, dice_from_counts, overlap_counts, per_video_dice
from lvseg.models.dinov2 import is_random

OVERLAY_VIDEOS = 6


def caveats(config: TrainConfig, store: FrameStore) -> list[str]:
    """Plain statements of what makes these numbers not a result, if anything."""
    notes = []
    if store.info.get("synthetic"):
        notes.append("SYNTHETIC data (lvseg synth): cartoons, not echocardiograms")
    if isinstance(config, BaselineConfig) and config.model == "tiny":
        notes.append("TINY test model")
    if isinstance(config, ProbeConfig) and is_random(config.backbone):
        notes.append(f"RANDOMLY initialised backbone ({config.backbone})")
    return notes


def split_report(split: str, metrics: dict[str, float], predicted: np.ndarray, masks: np.ndarray,
                 phases: np.ndarray, videos: np.ndarray, out: Path, title: str) -> dict[str, float]:
    """Bootstrap interval, per-video CSV and histogram for one split; returns the metrics with the CI."""
    counts = overlap_counts(predicted, masks)
    _, low, high = bootstrap_pooled_dice(counts)
    metrics = {**metrics, f"{split}_dice_ci_low": low, f"{split}_dice_ci_high": high}
    per_video_dice(videos, phases, counts).to_csv(out / f"{split}_per_video_dice.csv", index=False)
    dice_histogram(dice_from_counts(counts), phases, out / f"{split}_dice_histogram.png",
                   f"{title}\n{split}: pooled Dice {metrics[f'{split}_dice']:.3f} "
                   f"(95% CI {low:.3f}-{high:.3f}), {len(masks) // 2} videos")
    return metrics


def dice_histogram(dice: np.ndarray, phases: np.ndarray, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(0, 1, 26)
    ax.hist([dice[phases == "ES"], dice[phases == "ED"]], bins=bins, label=["ES", "ED"],
            color=["#1f77b4", "#ff7f0e"])
    ax.set_xlabel("Dice per frame")
    ax.set_ylabel("frames")
    ax.legend()
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlay(images: np.ndarray, predicted: np.ndarray, masks: np.ndarray, videos: np.ndarray,
            path: Path, title: str) -> None:
    """ES/ED frames of the first videos: traced LV in red, predicted in green."""
    count = min(OVERLAY_VIDEOS, len(images) // 2)
    fig, axes = plt.subplots(2, count, figsize=(2.1 * count, 5.0), squeeze=False)
    for column in range(count):
        for row, phase in enumerate(("ES", "ED")):
            index = 2 * column + row
            ax = axes[row, column]
            ax.imshow(images[index])
            for mask, colour in ((masks[index], "#ff3b30"), (predicted[index], "#34c759")):
                if mask.any():
                    ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=1.1)
            score = dice_from_counts(overlap_counts(predicted[index], masks[index]))[0]
            ax.set_title(f"{phase} Dice {score:.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1, column].set_xlabel(f"{videos[2 * column][:12]}", fontsize=7)
    fig.suptitle(f"{title}\nred: traced LV, green: predicted", fontsize=8)
    fig.tight_layout(h_pad=1.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    path.write_text(json.dumps(metrics, indent=1, default=float) + "\n")
