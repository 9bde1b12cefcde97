"""MLflow bookkeeping: one parent run per search, one nested child run per trial.

Everything goes through ``MlflowClient`` with an explicit tracking URI (no global state), so the
driver and every Ray worker talk to the same store: a SQLite file on one machine, or an
``http://`` tracking server on a cluster (workers then need no path on the driver's disk).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from lvseg.status import Status
from search.tags import (  # noqa: F401  (re-exported: the tag names are part of this module's API)
    DRIVER_TAG,
    HEARTBEAT_S,
    HEARTBEAT_TAG,
    KIND_TAG,
    NODE_TAG,
    PARENT_TAG,
    SAMPLES_TAG,
    SEARCH_TAG,
    STATUS_TAG,
    TRIAL_TAG,
)

# MLflow prints "View run ... at: URL" on every run it ends on a server: one line per trial of noise
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

EXPERIMENT = "lvsearch"
PARAM_LIMIT = 100                     # MLflow's batch limit for params
# A tracking server that does not answer must not hold anything up: MLflow's own defaults retry
# 7 times with backoff for minutes. One try, 10 s: a first contact fails within seconds, and a
# trial's journal keeps what could not be sent (search/journal.py).
IMPATIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class TrackingUnavailable(ConnectionError):
    """The tracking store cannot be opened or does not answer; the message names the URI."""


def first_line(error: BaseException) -> str:
    """What one console line can carry of an error: its type and first line; for an error that
    wraps a traceback in its message (Tune's TuneError), that traceback's last line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip()


@contextlib.contextmanager
def impatient() -> Iterator[None]:
    """MLflow HTTP calls inside make one attempt with a short timeout (the variables are read per
    request)."""
    saved = {key: os.environ.get(key) for key in IMPATIENT}
    os.environ.update(IMPATIENT)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else a SQLite file in the working directory: the one default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlruns.db'}"


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def local_path(uri: str) -> Path | None:
    """The file or folder behind a local store URI (sqlite:///, file:, a plain path), else None."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///"))
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:"))
    return Path(uri) if "://" not in uri else None


def open_store(uri: str, create: bool = False) -> MlflowClient:
    """A client of a store that exists and answers. Read-only commands pass ``create=False``: a
    missing local store is then an error instead of a new empty database. A server gets one
    short try (IMPATIENT), so a wrong address fails in seconds, not minutes."""
    path = local_path(uri)
    if path is not None and not path.exists():
        if not create:
            raise TrackingUnavailable(f"no tracking store at {uri} ({path} does not exist)")
        path.parent.mkdir(parents=True, exist_ok=True)
    mlflow = client(uri)
    with impatient():
        try:
            mlflow.search_experiments(max_results=1)
        except Exception as error:
            raise TrackingUnavailable(f"tracking store {uri} does not answer: {first_line(error)}") from None
    return mlflow


def find_experiment(mlflow: MlflowClient) -> str | None:
    """The lvsearch experiment's id, or None where no search ever ran (creates nothing)."""
    found = mlflow.get_experiment_by_name(EXPERIMENT)
    return None if found is None else found.experiment_id


def experiment_id(mlflow: MlflowClient, uri: str) -> str:
    """The lvsearch experiment, created on first use. Local stores keep artifacts beside the
    database under an absolute path (Ray workers run in other folders); servers choose their own."""
    found = find_experiment(mlflow)
    if found is not None:
        return found
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    # MLflow 3's UI treats an untagged experiment as a GenAI one; the tag marks it a model-training one
    # (its experiment page may still open on an overview: `lvsearch ui` links the runs table itself)
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


def search_parent_runs(mlflow: MlflowClient, experiment: str, limit: int = 1000) -> list:
    """The parent runs of searches in ``experiment``, newest first."""
    return mlflow.search_runs([experiment], filter_string=f"tags.`{KIND_TAG}` = 'search'",
                              order_by=["attributes.start_time DESC"], max_results=limit)


def find_search_run(mlflow: MlflowClient, uri: str, name: str):
    experiment = find_experiment(mlflow)
    runs = [] if experiment is None else mlflow.search_runs(
        [experiment], filter_string=f"tags.`{KIND_TAG}` = 'search' and tags.`{SEARCH_TAG}` = '{name}'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise LookupError(f"no search named {name!r} in the MLflow store {uri}")
    return runs[0]


def trial_runs(mlflow: MlflowClient, uri: str, parent_id: str) -> list:
    return mlflow.search_runs([experiment_id(mlflow, uri)], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'",
                              max_results=10_000)


def find_trial_run(mlflow: MlflowClient, uri: str, parent_id: str, trial_id: str) -> str | None:
    """The run id of a trial's child run, or None if it has none yet."""
    found = mlflow.search_runs([experiment_id(mlflow, uri)], max_results=1, filter_string=(
        f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{TRIAL_TAG}` = '{trial_id}'"))
    return found[0].info.run_id if found else None


def start_trial_run(mlflow: MlflowClient, uri: str, parent_id: str, search: str, trial_id: str,
                    run_name: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                    start_time: int | None = None) -> str:
    """The child run of a trial; a restored or retried trial gets its old run back (never a second
    one), RUNNING again. ``start_time`` (ms): when the trial started, if that was earlier than now."""
    existing = find_trial_run(mlflow, uri, parent_id, trial_id)
    if existing is not None:
        mlflow.update_run(existing, status="RUNNING")
        set_tags(mlflow, existing, {STATUS_TAG: "running", **(tags or {})})
        return existing
    run = mlflow.create_run(experiment_id(mlflow, uri), run_name=run_name, start_time=start_time, tags={
        PARENT_TAG: parent_id, KIND_TAG: "trial", SEARCH_TAG: search, TRIAL_TAG: trial_id, STATUS_TAG: "running",
        **(tags or {})})
    log_params(mlflow, run.info.run_id, params)
    return run.info.run_id


def log_metrics(mlflow: MlflowClient, run_id: str, metrics: Mapping[str, Any], step: int,
                timestamp: int | None = None) -> None:
    """Numeric entries of ``metrics`` at ``step`` (the epoch), in one call."""
    now = timestamp if timestamp is not None else int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
             if isinstance(v, int | float) and not isinstance(v, bool)]
    mlflow.log_batch(run_id, metrics=batch)


def log_params(mlflow: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    items = [Param(k, str(v)) for k, v in sorted(params.items())]
    for start in range(0, len(items), PARAM_LIMIT):
        mlflow.log_batch(run_id, params=items[start:start + PARAM_LIMIT])


def set_tags(mlflow: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    mlflow.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def finish_run(mlflow: MlflowClient, run_id: str, status: Status, end_time: int | None = None) -> None:
    """Close a run: our status tag, and MLflow's terminal state that matches it (at ``end_time``,
    ms, when it ended earlier than now)."""
    set_tags(mlflow, run_id, {STATUS_TAG: str(status)})
    mlflow.set_terminated(run_id, status=status.mlflow_state, end_time=end_time)
