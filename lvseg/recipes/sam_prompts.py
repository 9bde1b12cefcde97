"""``sam_prompts``: Segment Anything prompted per traced frame; a trial is one prompt strategy.

No training: each frame's image embedding comes from the cache (computed once per model and frame
store), and the trial runs only SAM's prompt encoder and mask decoder. Reports one result (as
epoch 1): pooled, ES/ED and mean Dice, EF error, and how often SAM took the whole heart.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lvseg.config import SamConfig, parse_config
from lvseg.embeddings import load_embeddings
from lvseg.framestore import FrameStore
from lvseg.metrics import dice_from_counts, overlap_counts, summarise, summary_keys
from lvseg.models.sam import build_sam, predictor, set_embedding
from lvseg.prompts import MASK_CHOICES, Options, Prompt, Target, make_prompt, train_priors
from lvseg.report import caveats, dice_histogram, overlay
from lvseg.status import COMPLETED, stopped
from lvseg.train import Report, RunResult, pick_device
from lvseg.volumes import ef_absolute_errors

WHOLE_HEART = 2.0  # predicted area above this multiple of the traced area: SAM took the heart


def model_masks(checkpoint: str, store: FrameStore, split: str) -> np.ndarray:
    """Bool (N, H, W) masks a trained baseline or probe checkpoint predicts for a split."""
    from lvseg.recipes import get_recipe

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config = parse_config(state["config"], source=str(checkpoint))
    trainer, splits = get_recipe(config.recipe).trainer_from_checkpoint(config, checkpoint, store)
    return trainer.predict(splits[split])[0]


class SamPromptsRecipe:
    """Evaluate one prompt strategy with SAM on one split."""

    def metric_keys(self, config: SamConfig) -> frozenset[str]:
        """The keys of the one metrics dict a trial reports: they name the evaluated split."""
        return frozenset({"epoch", "ef_mae", "whole_heart_fraction", "seconds"}) | summary_keys(f"{config.split}_")

    def __call__(self, config: SamConfig, data: FrameStore, report: Report | None = None,
                 workdir: str | Path | None = None, resume: bool = False) -> RunResult:
        started = time.perf_counter()
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="lvseg-sam-"))
        workdir.mkdir(parents=True, exist_ok=True)
        predicted, prompts, frames = self.predict(config, data)
        metrics = self.measure(config, predicted, frames)
        metrics["seconds"] = time.perf_counter() - started
        self.write_pictures(config, frames, predicted, prompts, metrics, workdir, caveats(config, data))
        result = RunResult(status=COMPLETED, config=config.to_dict(), best_epoch=1, best=metrics,
                           history=[metrics])
        if report is not None:
            try:
                report(dict(metrics))
            except Exception as error:  # the caller's way to stop us: not our bug
                result.status = stopped(1, f"{type(error).__name__}: {error}")
        return result

    def predict(self, config: SamConfig, data: FrameStore) -> tuple[np.ndarray, list[Prompt], Any]:
        """Predicted bool (N, H, W) masks and the prompts that produced them, ES then ED per video."""
        device = pick_device(config.device)
        embeddings = self.embeddings(config, data, device)
        sam = predictor(build_sam(config.model, config.checkpoint).to(device))
        train = data.video_indices("train")  # masks only: the train images are not needed here
        priors = train_priors(np.asarray(data.masks[train]).reshape(-1, *data.masks.shape[2:]),
                              np.tile(np.array(["ES", "ED"]), len(train)))
        frames, videos = data.frames(config.split), data.video_indices(config.split)
        guesses = model_masks(config.prompt_model, data, config.split) if config.strategy == "from_model" else None
        options = Options(offset=config.offset, margin=config.margin, k=config.k, m=config.m)
        rng = np.random.default_rng(config.seed)
        shape = frames.masks.shape[1:]
        predicted, prompts = np.zeros_like(frames.masks), []
        for i, (video, phase) in enumerate(zip(np.repeat(videos, 2), frames.phases, strict=True)):
            rows = np.asarray(data.tracings[video, i % 2])
            target = Target(rows[~np.isnan(rows).any(axis=1)], frames.masks[i], phase, priors[phase],
                            None if guesses is None else guesses[i])
            prompt = make_prompt(config.strategy, target, options, shape, jitter=config.jitter, rng=rng)
            set_embedding(sam, embeddings[video, i % 2], shape)
            masks, scores, _ = sam.predict(
                point_coords=prompt.points if len(prompt.points) else None,
                point_labels=prompt.labels if len(prompt.points) else None,
                box=prompt.box, multimask_output=config.multimask)
            predicted[i] = masks[MASK_CHOICES[config.mask_choice](masks, scores, priors[phase])]
            prompts.append(prompt)
        return predicted, prompts, frames

    def embeddings(self, config: SamConfig, data: FrameStore, device: torch.device) -> Any:
        """(V, 2, C, h, w) image embeddings, indexable by [video, phase]: the cache."""
        return load_embeddings(data, config.model, config.checkpoint, device)

    def measure(self, config: SamConfig, predicted: np.ndarray, frames: Any) -> dict[str, float]:
        prefix = f"{config.split}_"
        counts = overlap_counts(predicted, frames.masks)
        metrics: dict[str, Any] = {"epoch": 1, **summarise(counts, frames.phases, prefix)}
        errors = ef_absolute_errors(predicted[0::2], predicted[1::2], frames.ef[0::2])
        metrics["ef_mae"] = float(np.nanmean(errors)) if np.isfinite(errors).any() else float("nan")
        metrics["whole_heart_fraction"] = float(np.mean(counts[:, 1] > WHOLE_HEART * counts[:, 2]))
        return metrics

    def write_pictures(self, config: SamConfig, frames: Any, predicted: np.ndarray, prompts: list[Prompt],
                       metrics: dict[str, float], workdir: Path, notes: list[str]) -> None:
        title = f"SAM {config.model}, {config.strategy}, {config.mask_choice}, {config.split}"
        if notes:
            title += f" - {'; '.join(notes)}"
        dice = dice_from_counts(overlap_counts(predicted, frames.masks))
        dice_histogram(dice, frames.phases, workdir / "dice_histogram.png",
                       f"{title}\npooled Dice {metrics[f'{config.split}_dice']:.3f}, mean {dice.mean():.3f}, "
                       f"whole heart {metrics['whole_heart_fraction']:.0%}")
        overlay(frames.images, predicted, frames.masks, frames.videos, workdir / "overlay.png", title,
                prompts=prompts)

    def artifacts(self, config: SamConfig, store: FrameStore, workdir: Path, title: str) -> list[Path]:
        return [workdir / "overlay.png", workdir / "dice_histogram.png"]
