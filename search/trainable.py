"""The Ray Tune function every trial runs: config -> recipe -> one tune.report per epoch.

Trials receive paths (data folder, cache folder, journal folder), never pixels. A worker process
keeps its opened frame stores between trials (Tune reuses actors), and the recipes' caches are
memory-mapped files built once per node under a lock. Everything a trial logs goes through its
journal (search/journal.py), which the driver delivers: a worker never waits on the tracking store.

How a trial ends: its last report says ``completed``, ``diverged at epoch N: ...`` or ``failed:
...`` (an error in the trial's own code is reported, not raised: Tune would retry it, and it would
fail the same way). Only a dead worker process reaches Tune as an error, and Tune retries that
trial from its last checkpoint (``search: {max_failures: N}``).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune
from ray.tune import Checkpoint

from lvseg.config import RecipeConfig, parse_config
from lvseg.framestore import FrameStore, load_store
from lvseg.recipes import get_recipe
from lvseg.resident import set_device_parts
from lvseg.status import COMPLETED, RUNNING, Status, failed, failed_from
from lvseg.train import BEST, LAST, RunResult
from search import tags
from search.journal import Journal
from search.results import EPOCHS, STATUS, TRIAL_NUMBER, worst

_STORES: dict[tuple[str, str], FrameStore] = {}  # per worker process, kept across reused trials


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a search shares (picklable; sent once per worker by tune.with_parameters)."""

    search: str
    data_root: str
    cache_dir: str
    allow_missing: bool
    tracking_uri: str
    parent_run_id: str
    journal_dir: str
    metric: tuple[str, ...]
    mode: tuple[str, ...]
    searched: tuple[str, ...]   # names of the sampled params, for run names
    artifacts: bool = True

    @property
    def objectives(self) -> list[tuple[str, str]]:
        return list(zip(self.metric, self.mode, strict=True))


def frame_store(context: TrialContext) -> FrameStore:
    key = (context.data_root, context.cache_dir)
    if key not in _STORES:
        _STORES[key] = load_store(context.data_root, context.cache_dir, context.allow_missing, progress=False)
    return _STORES[key]


def run_name(context: TrialContext, number: int, config: dict[str, Any]) -> str:
    """A name for people: search, Optuna trial number and the sampled values."""

    def short(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    picked = " ".join(f"{k}={short(config[k])}" for k in context.searched if k in config)
    return f"{context.search}-t{number:03d} {picked}".strip()


class Best:
    """Running best of each objective across epochs, logged as ``best_<metric>``, with the
    interval reported beside it at that epoch (``<metric>_ci_low/high``) as
    ``best_<metric>_ci_low/high``."""

    def __init__(self, objectives: list[tuple[str, str]]) -> None:
        self.objectives = objectives
        self.values: dict[str, float] = {}

    def update(self, metrics: dict[str, Any]) -> dict[str, float]:
        for name, mode in self.objectives:
            value, key = metrics.get(name), f"best_{name}"
            if isinstance(value, int | float) and not math.isnan(value):
                old = self.values.get(key)
                if old is None or (value > old if mode == "max" else value < old):
                    self.values[key] = float(value)
                    for end in ("low", "high"):
                        if isinstance(metrics.get(f"{name}_ci_{end}"), int | float):
                            self.values[f"{key}_ci_{end}"] = float(metrics[f"{name}_ci_{end}"])
        return dict(self.values)


Send = Callable[[dict[str, Any], Any], None]  # tune.report(metrics, checkpoint=...)


class EpochReporter:
    """The recipe's ``report`` callback in a trial: each epoch becomes one journal entry and one
    Tune report.

    - An epoch the journal already holds (a retried or resumed trial trains it again, to the same
      numbers) is not logged twice.
    - ``best_<metric>`` of every objective so far goes with each epoch.
    - The last epoch's artifacts are logged *before* its report: a scheduler may stop the trial
      the moment it reports its last epoch, and nothing after that report is sure to run.
    - Every other epoch's report carries the work folder (last.pt, best.pt) as a Tune checkpoint,
      so that a retried or resumed trial continues from its last epoch.
    """

    def __init__(self, key: str, epochs: int, best: Best, journal: Journal, send: Send, workdir: Path,
                 artifacts: Callable[[], list[Path]], checkpoint: Callable[[Path], Any] = Checkpoint.from_directory
                 ) -> None:
        self.key, self.epochs, self.best, self.journal, self.send = key, epochs, best, journal, send
        self.workdir, self.artifacts, self.checkpoint = workdir, artifacts, checkpoint
        self.logged = journal.last_step(key)
        self.epoch = 0

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.epoch = int(metrics["epoch"])
        final = self.epoch == self.epochs
        bests = self.best.update(metrics)
        if self.epoch > self.logged:
            self.journal.metrics(self.key, {**metrics, **bests}, self.epoch)
            self.logged = self.epoch
        if final:
            for path in self.artifacts():
                self.journal.artifact(self.key, path)
        saved = None if final or not (self.workdir / LAST).is_file() else self.checkpoint(self.workdir)
        status = COMPLETED if final else RUNNING
        self.send({**metrics, **bests, EPOCHS: self.epochs, STATUS: str(status)}, saved)


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    key = tune.get_context().get_trial_id()
    journal = Journal(Path(context.journal_dir), key, context.tracking_uri, context.parent_run_id, context.search)
    config = dict(config)
    number = config.pop(TRIAL_NUMBER, 0)
    reporter: EpochReporter | None = None
    with tempfile.TemporaryDirectory(prefix="lvsearch-trial-") as tmp:
        workdir = Path(tmp)
        try:
            parts = _device_parts()
            set_device_parts(**parts)
            train_config = _open_run(config, number, context, journal, key, parts)
            resume = _restore(workdir)
            reporter = _reporter(train_config, context, journal, key, workdir)
            result = get_recipe(train_config.recipe)(train_config, frame_store(context), report=reporter,
                                                     workdir=workdir, resume=resume)
        except Exception as error:
            journal.text(key, traceback.format_exc(), "error.txt")
            epochs = reporter.epochs if reporter else 0
            _end_early(context, journal, failed_from(error), reporter.epoch if reporter else 0, epochs)
            return
    _end_early(context, journal, _unfinished(result), len(result.history), reporter.epochs)


def _open_run(config: dict[str, Any], number: int, context: TrialContext, journal: Journal,
              key: str, parts: dict[str, float]) -> RecipeConfig:
    """Validate the trial's config and open its child run (params, node, process, device parts,
    config.yaml)."""
    train_config = parse_config(config, source=f"trial {key}")
    part = ", ".join(f"{kind} {value:g}" for kind, value in parts.items())
    journal.start_run(key, run_name(context, number, config), train_config.to_dict(),
                      {tags.NODE_TAG: ray.util.get_node_ip_address(), tags.PID_TAG: str(os.getpid()),
                       tags.DEVICE_PARTS_TAG: part, **_gpu_tags(train_config)})
    resolved = {**train_config.to_dict(), "data": context.data_root}  # what `lvsearch export` writes
    journal.text(key, yaml.safe_dump(resolved, sort_keys=False), "config.yaml")
    return train_config


def _device_parts() -> dict[str, float]:
    """The part of its node's devices Ray gave this trial: of a card, its GPU fraction (``gpu:
    0.25`` packs four trials on one); of the node's memory, its CPUs over the node's. Resident
    inputs (lvseg.resident) stay within half of the one and a quarter of the other, so trials
    that start together on a node cannot, between them, take more than it has."""
    assigned = ray.get_runtime_context().get_assigned_resources()
    gpu, cpu, node = assigned.get("GPU", 0.0), assigned.get("CPU", 0.0), _node_cpus()
    return {"cuda": min(gpu, 1.0) if gpu > 0 else 1.0, "cpu": min(cpu / node, 1.0) if cpu > 0 and node > 0 else 1.0}


@functools.cache
def _node_cpus() -> float:
    """The CPUs Ray counts on this worker's node, 0 if it cannot tell (asked once per worker: it
    stays on its node)."""
    node = ray.get_runtime_context().get_node_id()
    return next((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["NodeID"] == node), 0.0)


def _gpu_tags(config: RecipeConfig) -> dict[str, str]:
    """The GPU ids Ray gave this trial and, when ``device: auto`` finds no CUDA on the node (a
    GPU declared to Ray but absent, a driver missing), the one-line notice that it runs on CPU."""
    gpus = ",".join(str(gpu) for gpu in ray.get_gpu_ids())
    if not gpus:
        return {}
    import torch

    if config.device != "auto" or torch.cuda.is_available():
        return {tags.GPUS_TAG: gpus}
    note = f"Ray gave this trial GPU {gpus}, but CUDA is not available on this node: running on CPU"
    print(note, flush=True)  # the worker's log
    return {tags.GPUS_TAG: gpus, tags.DEVICE_NOTE_TAG: note}


def _reporter(config: RecipeConfig, context: TrialContext, journal: Journal, key: str, workdir: Path) -> EpochReporter:
    best = Best(context.objectives)
    for earlier in _earlier_history(workdir):
        best.update(earlier)
    recipe = get_recipe(config.recipe)

    def artifacts() -> list[Path]:
        if not context.artifacts:
            return []
        store = frame_store(context)
        title = f"{context.search} - {'; '.join(recipe.caveats(config, store)) or 'EchoNet-Dynamic'} (val)"
        return recipe.artifacts(config, store, workdir, title)

    return EpochReporter(key, recipe.epochs(config), best, journal, lambda m, c: tune.report(m, checkpoint=c),
                         workdir, artifacts)


def _unfinished(result: RunResult) -> Status | None:
    """How a recipe's run ended if not by its last report: diverged, or stopped because our own
    report callback raised (a bug or a full disk, not the scheduler: that one exits the thread)."""
    if result.status.kind == "stopped":
        return failed(f"report at epoch {result.status.epoch} failed: {result.status.reason}")
    return result.status if result.status.kind in ("diverged", "failed") else None


def _end_early(context: TrialContext, journal: Journal, status: Status | None, epoch: int, epochs: int) -> None:
    """Tell Tune (and so the driver and the sampler) about a trial that ends without a last epoch."""
    if status is None:
        return
    tune.report({**worst(context.objectives), "epoch": epoch, EPOCHS: epochs, STATUS: str(status)})


def _restore(workdir: Path) -> bool:
    """Copy the trial's Tune checkpoint (if it is being resumed or retried) into its work folder."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as folder:
        for name in (LAST, BEST):
            if (Path(folder) / name).is_file():
                shutil.copy2(Path(folder) / name, workdir / name)
    return (workdir / LAST).is_file()


def _earlier_history(workdir: Path) -> list[dict[str, Any]]:
    if not (workdir / LAST).is_file():
        return []
    import torch

    return list(torch.load(workdir / LAST, map_location="cpu", weights_only=True)["history"])
