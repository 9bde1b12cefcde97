"""Optuna samplers and Ray Tune schedulers by name, and an OptunaSearch that tells Optuna the truth
about trials the scheduler stopped early."""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    TrialScheduler,
)
from ray.tune.search.optuna import OptunaSearch

from search.results import final_status
from search.space import SearchSpace


def build_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    name, seed = space.search["sampler"], space.search["seed"]
    if name == "tpe":
        # multivariate + group: TPE models parameters jointly and copes with conditional ones
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def build_scheduler(space: SearchSpace) -> TrialScheduler:
    """Schedulers count time in epochs: one reported result per epoch."""
    name, search = space.search["scheduler"], space.search
    if name == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=space.max_epochs,
                             grace_period=min(search["grace_period"], space.max_epochs),
                             reduction_factor=search["reduction_factor"])
    if name == "hyperband":
        return HyperBandScheduler(time_attr="training_iteration", max_t=space.max_epochs,
                                  reduction_factor=max(2, search["reduction_factor"]))
    if name == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=search["grace_period"],
                                  min_samples_required=2)
    if name == "fifo":
        return FIFOScheduler()
    raise ValueError(f"unknown scheduler {name!r}")


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna how each trial really ended (lvseg.status): a trial the
    scheduler stopped is PRUNED, a diverged or failed one FAIL.

    Stock OptunaSearch tells Optuna a stopped trial COMPLETED with its partial score, so TPE
    learns from early, low scores as if they were final."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error or trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        state = final_status(result).optuna_state
        if state == "COMPLETE":
            return super().on_trial_complete(trial_id, result, error)
        tell_quietly(self._ot_study, self._ot_trials[trial_id], state=optuna.trial.TrialState[state])
        self._completed_trials.add(trial_id)
        return None


def tell_quietly(study: optuna.Study, trial: optuna.Trial, *args: Any, **kwargs: Any) -> None:
    """``study.tell``, tolerating the GridSampler's ``study.stop()`` once its grid is exhausted:
    the trial is recorded before that call, and Tune (not Optuna) decides when the search ends."""
    try:
        study.tell(trial, *args, **kwargs)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise
