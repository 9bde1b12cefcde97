"""``sam_prompts``: Segment Anything prompted per traced frame; a trial is one prompt strategy.

No training: each frame's image embedding comes from the cache (computed once per model and frame
store), and a run evaluates the prompt encoder and mask decoder on one split. Reports one result
(as epoch 1): pooled, ES/ED and mean Dice, EF error, and how often SAM took the whole heart.

SAM's conventions hold throughout: points are (x, y) = (column, row) pixels of the stored frame
(``np.argwhere`` gives (row, column): mask-derived points are flipped in :mod:`lvseg.prompts`),
boxes are XYXY, images uint8 (H, W, 3) RGB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lvseg.config import RecipeConfig, check, choice, parse_config
from lvseg.embeddings import embedding_cache
from lvseg.framecache import FrameCache
from lvseg.framestore import FrameSet, FrameStore
from lvseg.metrics import dice_from_counts, overlap_counts, summarise, summary_keys
from lvseg.models.sam import SAM_MODELS, build_sam, needs_checkpoint, predictor, set_embedding
from lvseg.prompts import (
    MASK_CHOICES,
    SEED_OFFSET,
    STRATEGIES,
    Options,
    Prior,
    Prompt,
    Target,
    make_prompt,
    train_priors,
)
from lvseg.recipes.base import PER_VIDEO, Recipe, workdir_for, write_per_video
from lvseg.report import dice_histogram, overlay
from lvseg.status import COMPLETED, stopped
from lvseg.train import Report, RunResult, pick_device
from lvseg.volumes import ef_absolute_errors

WHOLE_HEART = 2.0  # predicted area above this multiple of the traced area: SAM took the heart


@dataclass(frozen=True, kw_only=True)
class SamSettings:
    """Which SAM, and how each frame's prompt is placed: what the SAM recipes share.

    Coordinates are (x, y) = (column, row) pixels of the stored frame."""

    model: str = "tiny"               # tiny (random, tests) | vit_b | vit_l | vit_h | random_vit_b
    checkpoint: str | None = None     # SAM checkpoint file for vit_b/l/h (e.g. sam_vit_b_01ec64.pth)
    strategy: str = "seed_one_point"
    offset: float = SEED_OFFSET       # px beyond the LV wall for background points
    margin: float = 5.0               # px added around boxes
    k: int = 3                        # foreground points (long_axis, k_points)
    m: int = 4                        # background points on a ring (k_points)
    jitter: float = 0.0               # px of Gaussian click noise on every prompt coordinate
    prompt_model: str | None = None   # from_model: a trained best.pt whose masks place the prompt

    def check_sam(self) -> None:
        choice(self, "model", SAM_MODELS)
        choice(self, "strategy", STRATEGIES)
        for key in ("offset", "margin", "jitter", "m"):
            check(self, key, getattr(self, key) >= 0, "must be >= 0")
        check(self, "k", self.k >= 1, "must be >= 1")
        check(self, "checkpoint", self.checkpoint is not None or not needs_checkpoint(self.model),
              f"is required for model {self.model} (a SAM checkpoint file, e.g. sam_{self.model}_*.pth)")
        check(self, "prompt_model", self.prompt_model is not None or self.strategy != "from_model",
              "is required by strategy from_model (a best.pt written by `lvseg train` or a search)")


@dataclass(frozen=True, kw_only=True)
class SamPromptsConfig(RecipeConfig, SamSettings):
    """One prompt strategy and mask choice, evaluated on one split."""

    recipe: str = "sam_prompts"
    mask_choice: str = "best_score"
    multimask: bool = True
    split: str = "val"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_sam()
        choice(self, "mask_choice", MASK_CHOICES)
        choice(self, "split", ("train", "val", "test"))


def model_masks(checkpoint: str, store: FrameStore, split: str) -> np.ndarray:
    """Bool (N, H, W) masks a trained recipe's checkpoint predicts for a split."""
    from lvseg.recipes import get_recipe

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = parse_config(state["config"], source=str(checkpoint))
    return get_recipe(config.recipe).evaluate(config, Path(checkpoint), store, split)[1]


def split_prompts(config: SamSettings, data: FrameStore, split: str,
                  rng: np.random.Generator) -> tuple[list[Prompt], FrameSet, dict[str, Prior]]:
    """Every traced frame's prompt on ``split`` (ES then ED per video), its frames, and the train
    split's average LV per phase (read from the train masks alone)."""
    train = data.video_indices("train")
    priors = train_priors(np.asarray(data.masks[train]).reshape(-1, *data.masks.shape[2:]),
                          np.tile(np.array(["ES", "ED"]), len(train)))
    frames, videos = data.frames(split), data.video_indices(split)
    guesses = model_masks(config.prompt_model, data, split) if config.strategy == "from_model" else None
    options = Options(offset=config.offset, margin=config.margin, k=config.k, m=config.m)
    prompts = []
    for i, (video, phase) in enumerate(zip(np.repeat(videos, 2), frames.phases, strict=True)):
        rows = np.asarray(data.tracings[video, i % 2])
        target = Target(rows[~np.isnan(rows).any(axis=1)], frames.masks[i], phase, priors[phase],
                        None if guesses is None else guesses[i])
        prompts.append(make_prompt(config.strategy, target, options, frames.masks.shape[1:], jitter=config.jitter,
                                   rng=rng))
    return prompts, frames, priors


def sam_caveats(config: SamSettings) -> list[str]:
    return [] if needs_checkpoint(config.model) else [f"RANDOMLY initialised SAM ({config.model})"]


class SamPromptsRecipe(Recipe):
    """Evaluate one prompt strategy with SAM on one split."""

    name = "sam_prompts"
    config = SamPromptsConfig
    trains = False
    cache_keys = ("model", "checkpoint")
    report_metrics = ("whole_heart_fraction",)  # the seed report's failure: SAM taking the whole heart

    def metric_keys(self, config: SamPromptsConfig) -> frozenset[str]:
        """The keys of the one metrics dict a run reports: they name the evaluated split."""
        return frozenset({"epoch", "ef_mae", "whole_heart_fraction", "seconds"}) | summary_keys(f"{config.split}_")

    def caches(self, config: SamPromptsConfig, data: FrameStore) -> list[FrameCache]:
        return [embedding_cache(data, config.model, config.checkpoint, pick_device(config.device))]

    def caveats(self, config: SamPromptsConfig, data: FrameStore) -> list[str]:
        return super().caveats(config, data) + sam_caveats(config)

    def run(self, config: SamPromptsConfig, data: FrameStore, report: Report | None = None,
            workdir: str | Path | None = None, resume: bool = False) -> RunResult:
        started = time.perf_counter()
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        workdir = workdir_for(config, workdir)
        predicted, prompts, frames = self.predict(config, data)
        metrics = {"epoch": 1, **self.measure(config, predicted, frames), "seconds": time.perf_counter() - started}
        self.write_pictures(config, frames, predicted, prompts, metrics, workdir, self.caveats(config, data))
        result = RunResult(status=COMPLETED, config=config.to_dict(), best_epoch=1, best=metrics, history=[metrics])
        if report is not None:
            try:
                report(dict(metrics))
            except Exception as error:  # the caller's way to stop us: not our bug
                result.status = stopped(1, f"{type(error).__name__}: {error}")
        return result

    def predict(self, config: SamPromptsConfig, data: FrameStore) -> tuple[np.ndarray, list[Prompt], FrameSet]:
        """Predicted bool (N, H, W) masks and the prompts that produced them, ES then ED per video."""
        embeddings = self.embeddings(config, data)
        sam = predictor(build_sam(config.model, config.checkpoint).to(pick_device(config.device)))
        prompts, frames, priors = split_prompts(config, data, config.split, np.random.default_rng(config.seed))
        videos = np.repeat(data.video_indices(config.split), 2)
        predicted = np.zeros_like(frames.masks)
        for i, prompt in enumerate(prompts):
            set_embedding(sam, embeddings[videos[i], i % 2], frames.masks.shape[1:])
            masks, scores, _ = sam.predict(
                point_coords=prompt.points if len(prompt.points) else None,
                point_labels=prompt.labels if len(prompt.points) else None,
                box=prompt.box, multimask_output=config.multimask)
            predicted[i] = masks[MASK_CHOICES[config.mask_choice](masks, scores, priors[frames.phases[i]])]
        return predicted, prompts, frames

    def embeddings(self, config: SamPromptsConfig, data: FrameStore) -> Any:
        """(V, 2, C, h, w) image embeddings indexable by [video, phase]: the cache."""
        (cache,) = self.caches(config, data)
        return cache.load()

    def measure(self, config: SamPromptsConfig, predicted: np.ndarray, frames: FrameSet) -> dict[str, float]:
        counts = overlap_counts(predicted, frames.masks)
        metrics = summarise(counts, frames.phases, f"{config.split}_")
        errors = ef_absolute_errors(predicted[0::2], predicted[1::2], frames.ef[0::2])
        metrics["ef_mae"] = float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan")
        metrics["whole_heart_fraction"] = float(np.mean(counts[:, 1] > WHOLE_HEART * counts[:, 2]))
        return metrics

    def write_pictures(self, config: SamPromptsConfig, frames: FrameSet, predicted: np.ndarray,
                       prompts: list[Prompt], metrics: dict[str, float], workdir: Path, notes: list[str]) -> None:
        title = f"SAM {config.model}, {config.strategy}, {config.mask_choice}, {config.split}"
        if notes:
            title += f" - {'; '.join(notes)}"
        dice = dice_from_counts(overlap_counts(predicted, frames.masks))
        dice_histogram(dice, frames.phases, workdir / "dice_histogram.png",
                       f"{title}\npooled Dice {metrics[f'{config.split}_dice']:.3f}, mean {dice.mean():.3f}, "
                       f"whole heart {metrics['whole_heart_fraction']:.0%}")
        overlay(frames.images, predicted, frames.masks, frames.videos, workdir / "overlay.png", title,
                prompts=prompts)
        write_per_video(frames, predicted, workdir)

    def artifacts(self, config: SamPromptsConfig, data: FrameStore, workdir: Path, title: str) -> list[Path]:
        return [workdir / "overlay.png", workdir / "dice_histogram.png", workdir / PER_VIDEO]

    def evaluate(self, config: SamPromptsConfig, checkpoint: Path | None, data: FrameStore,
                 split: str) -> tuple[dict[str, float], np.ndarray]:
        """The strategy on ``split`` (nothing was trained: ``checkpoint`` is not used)."""
        on_split = replace(config, split=split)
        predicted, _, frames = self.predict(on_split, data)
        metrics = self.measure(on_split, predicted, frames)
        return {k if k.startswith(f"{split}_") else f"{split}_{k}": v for k, v in metrics.items()}, predicted
