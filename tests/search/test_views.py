from __future__ import annotations

import json

from search import tracking, views


def test_the_trials_view_ranks_one_searchs_trials_with_the_columns_people_decide_by() -> None:
    view = views.trials_view("abc123", ["val_dice", "ef_mae"], ["max", "min"], ["lr", "loss"])
    assert view["searchFilter"] == "tags.`mlflow.parentRunId` = 'abc123'"
    assert view["orderByKey"] == "metrics.`best_val_dice`" and view["orderByAsc"] is False
    assert view["selectedColumns"] == [
        "attributes.`Run Name`", "tags.`lvsearch.status`",
        "metrics.`best_val_dice`", "metrics.`best_val_dice_ci_low`", "metrics.`best_val_dice_ci_high`",
        "metrics.`best_ef_mae`", "metrics.`best_ef_mae_ci_low`", "metrics.`best_ef_mae_ci_high`",
        "params.`lr`", "params.`loss`"]
    assert views.trials_view("p", ["ef_mae"], ["min"], [])["orderByAsc"] is True


def test_the_view_is_saved_on_the_experiment_under_the_key_its_url_names(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    mlflow = tracking.client(uri)
    experiment = tracking.experiment_id(mlflow, uri)
    views.save_trials_view(mlflow, experiment, "s1", "parent", ["val_dice"], ["max"], ["lr"])
    saved = mlflow.get_experiment(experiment).tags["mlflow.sharedViewState.lvsearch-s1"]
    assert json.loads(saved) == views.trials_view("parent", ["val_dice"], ["max"], ["lr"])
    assert views.trials_url("http://127.0.0.1:5000/", experiment, "s1") == (
        f"http://127.0.0.1:5000/#/experiments/{experiment}/runs?viewStateShareKey=lvsearch-s1")
