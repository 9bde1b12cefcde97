"""The Ray Tune function every trial runs: config -> recipe -> one tune.report per epoch.

Trials receive paths (data folder, cache folder, tracking URI), never pixels. A worker process
keeps its opened frame stores between trials (Tune reuses actors), and the recipes' feature caches
are memory-mapped files built once per node under a lock.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune
from ray.tune import Checkpoint

from lvseg.config import parse_config
from lvseg.framestore import FrameStore, load_store
from lvseg.recipes import get_recipe
from lvseg.report import caveats
from lvseg.train import BEST, LAST
from search import tracking
from search.samplers import TRIAL_STATUS
from search.space import TRIAL_NUMBER

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
    metric: tuple[str, ...]
    mode: tuple[str, ...]
    searched: tuple[str, ...]   # names of the sampled params, for run names
    artifacts: bool = True


def open_store(context: TrialContext) -> FrameStore:
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


class _Best:
    """Running best of each objective across epochs, logged as best_<metric>."""

    def __init__(self, metrics: tuple[str, ...], modes: tuple[str, ...]) -> None:
        self.pairs = list(zip(metrics, modes, strict=True))
        self.values: dict[str, float] = {}

    def update(self, metrics: dict[str, Any]) -> dict[str, float]:
        for name, mode in self.pairs:
            value, key = metrics.get(name), f"best_{name}"
            if isinstance(value, int | float) and not math.isnan(value):
                old = self.values.get(key)
                if old is None or (value > old if mode == "max" else value < old):
                    self.values[key] = float(value)
        return dict(self.values)


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    trial = tune.get_context()
    store = open_store(context)
    config = dict(config)
    number = config.pop(TRIAL_NUMBER, 0)
    train_config = parse_config(config, source=f"trial {trial.get_trial_name()}")
    mlflow = tracking.client(context.tracking_uri)
    run_id = tracking.start_trial_run(mlflow, context.tracking_uri, context.parent_run_id, context.search,
                                      trial.get_trial_id(), run_name(context, number, config),
                                      train_config.to_dict())
    mlflow.set_tag(run_id, tracking.NODE_TAG, ray.util.get_node_ip_address())
    best = _Best(context.metric, context.mode)
    with tempfile.TemporaryDirectory(prefix="lvsearch-trial-") as tmp:
        workdir = Path(tmp)
        resume = _restore(workdir)
        for earlier in _earlier_history(workdir):
            best.update(earlier)
        # an epoch logged just before an interruption, but not in the Tune checkpoint the trial
        # resumes from, is trained again (same seed, same numbers): log it once
        logged = max((m.step for m in mlflow.get_metric_history(run_id, "epoch")), default=0)

        def report(metrics: dict[str, Any]) -> None:
            final = metrics["epoch"] == train_config.epochs
            bests = best.update(metrics)
            if metrics["epoch"] > logged:
                tracking.log_metrics(mlflow, run_id, {**metrics, **bests}, step=metrics["epoch"])
            if final and context.artifacts:
                # before the last tune.report: a scheduler may stop the trial the moment it reports
                _log_artifacts(mlflow, run_id, train_config, store, context, workdir)
            # the Trainer's last.pt/best.pt travel as a Tune checkpoint: a resumed search continues
            # this trial from its last epoch instead of from scratch (a finished trial needs none)
            checkpoint = Checkpoint.from_directory(workdir) if not final and (workdir / LAST).is_file() else None
            tune.report({**metrics, **bests, "epochs": train_config.epochs, "mlflow_run_id": run_id,
                         TRIAL_STATUS: "completed" if final else "running"}, checkpoint=checkpoint)

        result = get_recipe(train_config.recipe)(train_config, store, report=report, workdir=workdir, resume=resume)
        if result.status.startswith("diverged"):
            worst = {m: (-math.inf if mode == "max" else math.inf)
                     for m, mode in zip(context.metric, context.mode, strict=True)}
            tune.report({**worst, "epoch": len(result.history), "epochs": train_config.epochs,
                         TRIAL_STATUS: "diverged", "status_text": result.status, "mlflow_run_id": run_id})


def _restore(workdir: Path) -> bool:
    """Copy the trial's Tune checkpoint (if it is being resumed) into its work folder."""
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


def _log_artifacts(mlflow, run_id: str, config, store: FrameStore, context: TrialContext, workdir: Path) -> None:
    """The fully resolved config (what `lvsearch export` hands to `lvseg train`) and the recipe's
    pictures (validation overlay; for SAM also the Dice histogram)."""
    resolved = {**config.to_dict(), "data": context.data_root}
    mlflow.log_text(run_id, yaml.safe_dump(resolved, sort_keys=False), "config.yaml")
    title = f"{context.search} - {'; '.join(caveats(config, store)) or 'EchoNet-Dynamic'} (val)"
    for path in get_recipe(config.recipe).artifacts(config, store, workdir, title):
        mlflow.log_artifact(run_id, str(path))
