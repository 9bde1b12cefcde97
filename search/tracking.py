"""MLflow bookkeeping: one parent run per search, one nested child run per trial.

Everything goes through ``MlflowClient`` with an explicit tracking URI (no global state), so the
driver and every Ray worker talk to the same store: a SQLite file on one machine, or an
``http://`` tracking server on a cluster (workers then need no path on the driver's disk).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

EXPERIMENT = "lvsearch"
KIND_TAG = "lvsearch.kind"            # "search" on parent runs, "trial" on child runs
SEARCH_TAG = "lvsearch.search"        # the search's name, on both
TRIAL_TAG = "lvsearch.trial_id"       # Ray Tune's trial id, on child runs
NODE_TAG = "lvsearch.node"            # IP of the Ray node that ran the trial
STATUS_TAG = "lvsearch.status"        # completed | pruned at epoch N | diverged at epoch N | failed: ...
PARENT_TAG = "mlflow.parentRunId"
PARAM_LIMIT = 100                     # MLflow's batch limit for params


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else a SQLite file in the working directory: the one default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlruns.db'}"


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow: MlflowClient, uri: str) -> str:
    """The lvsearch experiment, created on first use. Local stores keep artifacts beside the
    database under an absolute path (Ray workers run in other folders); servers choose their own."""
    found = mlflow.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    # without this tag MLflow 3's UI opens on GenAI traces instead of the runs table (PITFALLS.md, 9)
    return mlflow.create_experiment(EXPERIMENT, artifact_location=location,
                                    tags={"mlflow.experimentKind": "custom_model_development"})


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_search_run(mlflow: MlflowClient, uri: str, name: str, tags: Mapping[str, str],
                     space_text: str, space_file: str) -> str:
    """The parent run of a search; the space YAML goes in as an artifact."""
    run = mlflow.create_run(experiment_id(mlflow, uri), run_name=name, tags={
        KIND_TAG: "search", SEARCH_TAG: name, "git_commit": git_commit(), "host": socket.gethostname(), **tags})
    mlflow.log_text(run.info.run_id, space_text, f"space/{Path(space_file).name}")
    return run.info.run_id


def find_search_run(mlflow: MlflowClient, uri: str, name: str):
    runs = mlflow.search_runs([experiment_id(mlflow, uri)],
                              filter_string=f"tags.`{KIND_TAG}` = 'search' and tags.`{SEARCH_TAG}` = '{name}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise LookupError(f"no search named {name!r} in the MLflow store {uri}")
    return runs[0]


def trial_runs(mlflow: MlflowClient, uri: str, parent_id: str) -> list:
    return mlflow.search_runs([experiment_id(mlflow, uri)], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
                              max_results=10_000)


def start_trial_run(mlflow: MlflowClient, uri: str, parent_id: str, search: str, trial_id: str,
                    run_name: str, params: Mapping[str, Any]) -> str:
    """The child run of a trial; a restored trial gets its old run back (never a second one)."""
    existing = mlflow.search_runs([experiment_id(mlflow, uri)], max_results=1, filter_string=(
        f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{TRIAL_TAG}` = '{trial_id}'"))
    if existing:
        run_id = existing[0].info.run_id
        mlflow.update_run(run_id, status="RUNNING")
        return run_id
    run = mlflow.create_run(experiment_id(mlflow, uri), run_name=run_name, tags={
        PARENT_TAG: parent_id, KIND_TAG: "trial", SEARCH_TAG: search, TRIAL_TAG: trial_id, STATUS_TAG: "running"})
    items = [Param(k, str(v)) for k, v in sorted(params.items())]
    for start in range(0, len(items), PARAM_LIMIT):
        mlflow.log_batch(run.info.run_id, params=items[start:start + PARAM_LIMIT])
    return run.info.run_id


def log_metrics(mlflow: MlflowClient, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
    """Numeric entries of ``metrics`` at ``step`` (the epoch), in one call."""
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
             if isinstance(v, int | float) and not isinstance(v, bool)]
    mlflow.log_batch(run_id, metrics=batch)


def finish_run(mlflow: MlflowClient, run_id: str, status_text: str) -> None:
    """Close a run with an MLflow status matching our status text."""
    if status_text == "completed":
        state = "FINISHED"
    elif status_text.startswith("pruned"):
        state = "KILLED"
    else:
        state = "FAILED"
    mlflow.log_batch(run_id, tags=[RunTag(STATUS_TAG, status_text)])
    mlflow.set_terminated(run_id, status=state)
