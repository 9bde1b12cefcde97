"""A saved view of the MLflow UI's runs table for each search: its trials, best first, with the
columns people decide by (status, the metrics' best values with the 95% interval, the searched
params), so nobody has to configure the UI to read a search.

MLflow's UI opens a view shared through an experiment tag ``mlflow.sharedViewState.<key>`` (a JSON
object of search facets and table state) when its URL carries ``viewStateShareKey=<key>``. That
format is the UI's own, not a public API: a test opens the view in a browser on every run, so a
change in a new MLflow shows up as a failing test, not as a silently empty table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from search.tags import PARENT_TAG, STATUS_TAG

SHARED_VIEW_TAG = "mlflow.sharedViewState."


def view_key(search: str) -> str:
    return f"lvsearch-{search}"


def trials_view(parent_run_id: str, metrics: Sequence[str], modes: Sequence[str], searched: Sequence[str]) -> dict:
    """The table state: only this search's trials, ranked by the first metric."""
    columns = ["attributes.`Run Name`", f"tags.`{STATUS_TAG}`"]
    for metric in metrics:
        columns += [f"metrics.`best_{metric}`", f"metrics.`best_{metric}_ci_low`", f"metrics.`best_{metric}_ci_high`"]
    columns += [f"params.`{name}`" for name in searched]
    return {"searchFilter": f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            "orderByKey": f"metrics.`best_{metrics[0]}`", "orderByAsc": modes[0] == "min",
            "selectedColumns": columns, "runsHiddenMode": "SHOW_ALL"}


def save_trials_view(mlflow: Any, experiment_id: str, search: str, parent_run_id: str, metrics: Sequence[str],
                     modes: Sequence[str], searched: Sequence[str]) -> None:
    view = trials_view(parent_run_id, metrics, modes, searched)
    mlflow.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + view_key(search), json.dumps(view))


def trials_url(base: str, experiment_id: str, search: str) -> str:
    """The UI's address of the search's trials view (``base``: where the UI serves)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={view_key(search)}"
