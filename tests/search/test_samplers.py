from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler

from search import studies
from search.samplers import SAMPLERS, SCHEDULERS, PruneAwareOptunaSearch, build_sampler, build_scheduler, tell_quietly
from search.space import parse_space


def _space(sampler: str = "tpe", scheduler: str = "asha") -> dict:
    choices = sampler == "grid"
    params = {"optimizer": {"type": "choice", "values": ["sgd", "adam"]},
              "batch_size": {"type": "choice", "values": [4, 8]}}
    if not choices:
        params["lr"] = {"type": "loguniform", "low": 1e-4, "high": 1e-1}
    raw = {"recipe": "dinov2_probe", "fixed": {"epochs": 4}, "params": params,
           "search": {"sampler": sampler, "scheduler": scheduler}}
    if sampler == "nsga2":
        raw.update(metric=["val_dice", "seconds"], mode=["max", "min"])
        raw["search"]["scheduler"] = "fifo"
    return raw


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_draws_from_the_space(name: str) -> None:
    space = parse_space(_space(name), "s")
    directions = ["maximize", "minimize"] if space.multi_objective else ["maximize"]
    study = optuna.create_study(sampler=build_sampler(space), directions=directions)
    define = space.define_by_run()
    for value in (0.1, 0.5, 0.3, 0.7):
        trial = study.ask()
        define(trial)
        assert trial.params["optimizer"] in ("sgd", "adam")
        tell_quietly(study, trial, [value, 1.0] if space.multi_objective else value)


KINDS = {"asha": "AsyncHyperBandScheduler", "hyperband": "HyperBandScheduler", "median": "MedianStoppingRule",
         "fifo": "FIFOScheduler"}


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_builds_the_named_kind(name: str) -> None:
    scheduler = build_scheduler(parse_space(_space(scheduler=name), "s"))
    assert isinstance(scheduler, TrialScheduler) and type(scheduler).__name__ == KINDS[name]


def test_asha_counts_epochs_up_to_the_space_s_longest_trial() -> None:
    scheduler = build_scheduler(parse_space(_space(), "s"))
    assert scheduler._time_attr == "training_iteration" and scheduler._max_t == 4


def _searcher(storage: str | None = None) -> PruneAwareOptunaSearch:
    space = parse_space(_space("random"), "s")
    return PruneAwareOptunaSearch(space=space.define_by_run(), metric="val_dice", mode="max",
                                  sampler=build_sampler(space), study_name="s",
                                  storage=studies.storage(storage) if storage else None)


def _result(epoch: int, status: str, dice: float = 0.5) -> dict:
    return {"val_dice": dice, "epoch": epoch, "epochs": 4, "status": status, "training_iteration": epoch}


def test_stopped_trials_reach_optuna_as_pruned_not_complete() -> None:
    searcher = _searcher()
    for trial_id in ("stopped", "finished", "diverged", "failed", "crashed"):
        searcher.suggest(trial_id)
    searcher.on_trial_result("stopped", _result(1, "running", 0.2))
    searcher.on_trial_complete("stopped", _result(1, "running", 0.2))
    searcher.on_trial_result("finished", _result(4, "completed", 0.8))
    searcher.on_trial_complete("finished", _result(4, "completed", 0.8))
    searcher.on_trial_complete("diverged", _result(2, "diverged at epoch 2: non-finite bce loss", float("-inf")))
    searcher.on_trial_complete("failed", _result(0, "failed: ValueError: x", float("-inf")))
    searcher.on_trial_complete("crashed", None, error=True)
    states = [t.state.name for t in searcher._ot_study.get_trials(deepcopy=False)]
    assert states == ["PRUNED", "COMPLETE", "FAIL", "FAIL", "FAIL"]
    assert searcher._ot_study.best_value == 0.8


def test_a_resumed_searcher_leaves_alone_trials_the_study_ended_after_the_snapshot(tmp_path: Path) -> None:
    """A driver killed after telling Optuna but before Tune saved again: the resumed search re-runs
    the trial; the study's record stands (Optuna refuses to update an ended trial)."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = _searcher(storage)
    first.suggest("t")
    first.save(str(tmp_path / "snapshot.pkl"))  # Tune's snapshot: "t" is live
    first.on_trial_result("t", _result(1, "running", 0.6))
    first.on_trial_complete("t", _result(4, "completed", 0.8))
    with (tmp_path / "snapshot.pkl").open("rb") as handle:
        assert PruneAwareOptunaSearch.UNSAVED not in pickle.load(handle)  # never saved: it would be stale
    resumed = _searcher(storage)
    resumed.restore(str(tmp_path / "snapshot.pkl"))
    resumed.on_trial_result("t", _result(1, "running", 0.1))  # would raise UpdateFinishedTrialError
    resumed.on_trial_complete("t", _result(4, "completed", 0.2))
    (trial,) = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert trial.state.name == "COMPLETE" and trial.value == 0.8 and trial.intermediate_values == {1: 0.6}
