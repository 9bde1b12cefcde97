"""Optuna samplers and Ray Tune schedulers by name (one ``name -> builder`` dict each: the space
validates names against them), and an OptunaSearch that tells Optuna the truth about trials the
scheduler stopped early."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    TrialScheduler,
)
from ray.tune.search.optuna import OptunaSearch

from lvseg.registry import lookup
from search.results import final_status

if TYPE_CHECKING:
    from search.space import SearchSpace


def _tpe(space: SearchSpace) -> optuna.samplers.BaseSampler:
    # multivariate + group: TPE models parameters jointly and copes with conditional ones
    return optuna.samplers.TPESampler(seed=space.search["seed"], multivariate=True, group=True)


def _random(space: SearchSpace) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=space.search["seed"])


def _cmaes(space: SearchSpace) -> optuna.samplers.BaseSampler:
    return optuna.samplers.CmaEsSampler(seed=space.search["seed"], warn_independent_sampling=False)


def _gp(space: SearchSpace) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=space.search["seed"])


def _qmc(space: SearchSpace) -> optuna.samplers.BaseSampler:
    return optuna.samplers.QMCSampler(seed=space.search["seed"], warn_independent_sampling=False)


def _grid(space: SearchSpace) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GridSampler(space.grid(), seed=space.search["seed"])


def _nsga2(space: SearchSpace) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=space.search["seed"])


SAMPLERS: dict[str, Callable[[SearchSpace], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe, "random": _random, "cmaes": _cmaes, "gp": _gp, "qmc": _qmc, "grid": _grid, "nsga2": _nsga2}


# Schedulers count time in epochs: one reported result per epoch.

def _asha(space: SearchSpace) -> TrialScheduler:
    return ASHAScheduler(time_attr="training_iteration", max_t=space.max_epochs,
                         grace_period=min(space.search["grace_period"], space.max_epochs),
                         reduction_factor=space.search["reduction_factor"])


def _hyperband(space: SearchSpace) -> TrialScheduler:
    return HyperBandScheduler(time_attr="training_iteration", max_t=space.max_epochs,
                              reduction_factor=max(2, space.search["reduction_factor"]))


def _median(space: SearchSpace) -> TrialScheduler:
    return MedianStoppingRule(time_attr="training_iteration", grace_period=space.search["grace_period"],
                              min_samples_required=2)


def _fifo(space: SearchSpace) -> TrialScheduler:
    return FIFOScheduler()


SCHEDULERS: dict[str, Callable[[SearchSpace], TrialScheduler]] = {
    "asha": _asha, "hyperband": _hyperband, "median": _median, "fifo": _fifo}


def build_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    return lookup(SAMPLERS, space.search["sampler"], "sampler")(space)


def build_scheduler(space: SearchSpace) -> TrialScheduler:
    return lookup(SCHEDULERS, space.search["scheduler"], "scheduler")(space)


class PruneAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna how each trial really ended (lvseg.status): a trial the
    scheduler stopped is PRUNED with its last value, a diverged or failed one FAIL.

    Stock OptunaSearch tells Optuna a stopped trial COMPLETED with its partial score, so TPE
    learns from early, low scores as if they were final. And a search resumed after its driver
    was killed re-runs trials the persistent study had already been told about (Tune's snapshot
    lags): those are left as the study recorded them, since Optuna refuses to update them."""

    UNSAVED = "_asked_in_this_process"

    def suggest(self, trial_id: str) -> Any:
        suggestion = super().suggest(trial_id)
        if isinstance(suggestion, dict):
            self.__dict__.setdefault(self.UNSAVED, set()).add(trial_id)
        return suggestion

    def save(self, checkpoint_path: str) -> None:
        """As OptunaSearch saves, without the trials asked in this process (see _ended_in_study)."""
        asked = self.__dict__.pop(self.UNSAVED, set())
        try:
            super().save(checkpoint_path)
        finally:
            self.__dict__[self.UNSAVED] = asked

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != self.UNSAVED}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._ended_in_study(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._ot_trials and self._ended_in_study(trial_id):
            self._completed_trials.add(trial_id)
            return None
        if error or trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        state = final_status(result).optuna_state
        if state == "COMPLETE":
            return super().on_trial_complete(trial_id, result, error)
        if state == "PRUNED":
            self._report_last(trial_id, result or {})
        tell_quietly(self._ot_study, self._ot_trials[trial_id], state=optuna.trial.TrialState[state])
        self._completed_trials.add(trial_id)
        return None

    def _ended_in_study(self, trial_id: str) -> bool:
        """Whether the study holds this trial as ended. A trial this process asked for and has not
        told is live: no need to ask the storage (an RDB query per epoch, held up Tune's loop).
        Any other trial (a resumed search's) is read from the storage each time: the set of trials
        asked here is never saved, since in Tune's snapshot it would be stale in exactly the
        resumed search this check is for."""
        trial = self._ot_trials.get(trial_id)
        if trial is None:
            return False
        if trial_id in self.__dict__.get(self.UNSAVED, ()) and trial_id not in self._completed_trials:
            return False
        return self._ot_study._storage.get_trial(trial._trial_id).state.is_finished()

    def _report_last(self, trial_id: str, result: dict) -> None:
        """A trial stopped at its first result was never reported (Tune reports only results it
        continues after): PRUNED keeps the value it was stopped on, as pruners expect."""
        value, step = result.get(self.metric), result.get("training_iteration")
        if isinstance(self.metric, str) and value is not None and step is not None:
            trial = self._ot_study._storage.get_trial(self._ot_trials[trial_id]._trial_id)
            if step not in trial.intermediate_values:
                self._ot_trials[trial_id].report(value, step)


def tell_quietly(study: optuna.Study, trial: optuna.Trial, *args: Any, **kwargs: Any) -> None:
    """``study.tell``, tolerating the GridSampler's ``study.stop()`` once its grid is exhausted:
    the trial is recorded before that call, and Tune (not Optuna) decides when the search ends."""
    try:
        study.tell(trial, *args, **kwargs)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise
