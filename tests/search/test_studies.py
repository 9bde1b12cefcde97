"""Persistent studies and warm starts, against a real MLflow store holding an earlier search."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pytest

from lvseg.status import Status
from search import studies, tracking
from search.samplers import PruneAwareOptunaSearch, build_sampler
from search.space import parse_space

OPTIMUM = 3e-3  # the earlier search's best learning rate


def _space(low: float = 1e-4, high: float = 1e-1) -> dict:
    return {"recipe": "dinov2_probe", "fixed": {"backbone": "tiny", "epochs": 3},
            "params": {"lr": {"type": "loguniform", "low": low, "high": high},
                       "optimizer": {"type": "choice", "values": ["sgd", "adamw"]},
                       "momentum": {"type": "uniform", "low": 0.5, "high": 0.95, "when": {"optimizer": "sgd"}}},
            "search": {"sampler": "tpe", "seed": 0}}


def _earlier_search(uri: str, rates: list[float]) -> None:
    """A finished search whose score peaks at lr = OPTIMUM: completed, pruned and failed trials."""
    mlflow = tracking.client(uri)
    parent = tracking.start_search_run(mlflow, uri, "earlier", {"recipe": "dinov2_probe", "metric": "val_dice",
                                                                 "mode": "max"}, "recipe: dinov2_probe", "e.yaml")
    for i, lr in enumerate(rates):
        params = {"recipe": "dinov2_probe", "backbone": "tiny", "epochs": 3, "lr": lr,
                  "optimizer": "adamw" if i % 3 else "sgd", "momentum": 0.9}
        run = tracking.start_trial_run(mlflow, uri, parent, "earlier", f"t{i}", f"earlier-t{i:03d}", params)
        score = 0.9 - 0.2 * abs(math.log10(lr / OPTIMUM))
        status = Status("completed") if i % 7 else Status("pruned", 1)
        tracking.log_metrics(mlflow, run, {"val_dice": score}, step=1)
        tracking.log_metrics(mlflow, run, {"best_val_dice": score}, step=1)
        tracking.finish_run(mlflow, run, status)


def _searcher(space: dict) -> PruneAwareOptunaSearch:
    parsed = parse_space(space, "s.yaml")
    return PruneAwareOptunaSearch(space=parsed.define_by_run(), metric="val_dice", mode="max",
                                  sampler=build_sampler(parsed), study_name="new")


def test_a_warm_start_tells_the_sampler_every_fitting_trial_and_names_the_rest(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    rates = [*np.geomspace(2e-4, 5e-2, 20), 0.5]  # the last one lies outside the new space
    _earlier_search(uri, rates)
    searcher = _searcher(_space())
    (line,) = studies.warm_start(searcher._ot_study, parse_space(_space(), "s.yaml"), uri, ["earlier"])
    trials = searcher._ot_study.get_trials(deepcopy=False)
    assert len(trials) == 20 and "20 trial(s) of earlier told to the sampler, 1 skipped" in line
    assert "lr 0.5 is outside 0.0001..0.1" in line
    assert {t.state.name for t in trials} == {"COMPLETE", "PRUNED"}
    assert all("momentum" in t.params for t in trials if t.params["optimizer"] == "sgd")
    assert not any("momentum" in t.params for t in trials if t.params["optimizer"] == "adamw")


def test_tpe_starts_near_the_warm_started_optimum(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    _earlier_search(uri, list(np.geomspace(1.5e-4, 8e-2, 24)))
    warm, cold = _searcher(_space()), _searcher(_space())
    studies.warm_start(warm._ot_study, parse_space(_space(), "s.yaml"), uri, ["earlier"])

    def distance(searcher: PruneAwareOptunaSearch) -> float:
        lrs = [searcher.suggest(f"trial-{i}")["lr"] for i in range(10)]
        return float(np.median([abs(math.log10(lr / OPTIMUM)) for lr in lrs]))

    near, far = distance(warm), distance(cold)
    print(f"median |log10(lr / optimum)| of the first 10 suggestions: warm {near:.2f}, cold {far:.2f}")
    assert near < 0.35 < far


def test_a_new_search_refuses_a_study_name_already_taken(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="taken", storage=url)
    studies.check_free(url, "fresh")
    with pytest.raises(FileExistsError, match="an Optuna study named 'taken' exists"):
        studies.check_free(url, "taken")


def test_trials_left_running_by_a_killed_driver_are_failed(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    study.ask()
    study.tell(study.ask(), 0.5)
    assert studies.fail_running(study) == 1
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]
