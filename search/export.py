"""Read searches back from MLflow: rank their trials, list them, export the best configs."""

from __future__ import annotations

import math
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from lvseg.status import COMPLETED, INTERRUPTED, RUNNING, Status, failed
from search import tracking

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small YAML: no bar


def run_status(run: Any) -> Status:
    """A run's status from our tag, else from MLflow's own state (a run no lvsearch wrote)."""
    text = run.data.tags.get(tracking.STATUS_TAG)
    if text:
        try:
            return Status.parse(text)
        except ValueError:
            return failed(text)
    fallback = {"RUNNING": RUNNING, "FINISHED": COMPLETED, "KILLED": INTERRUPTED}
    return fallback.get(run.info.status) or failed(f"MLflow state {run.info.status}")


def ranked_trials(uri: str, parent_run_id: str, metric: str, mode: str, searched: list[str]) -> list[dict[str, Any]]:
    """Child runs of a search, completed ones first, each group best first by ``best_<metric>``."""
    rows = []
    for run in tracking.trial_runs(tracking.client(uri), uri, parent_run_id):
        score = run.data.metrics.get(f"best_{metric}")
        if score is not None and not math.isfinite(score):
            score = None
        rows.append({"run_id": run.info.run_id, "name": run.info.run_name or run.info.run_id,
                     "status": run_status(run), "score": score,
                     "params": {k: run.data.params.get(k) for k in searched}})

    def key(row: dict[str, Any]) -> tuple:
        missing = row["score"] is None
        value = 0.0 if missing else (-row["score"] if mode == "max" else row["score"])
        return (row["status"].kind != "completed", missing, value)

    return sorted(rows, key=key)


def search_summaries(uri: str) -> list[dict[str, Any]]:
    """Every search in the store, newest first, with its best trial and how it stands. A search
    whose driver is gone without ending it (killed with SIGKILL, its machine lost) is reported as
    interrupted, with the trials it has left. Reads only: a store that does not exist is an error."""
    mlflow = tracking.open_store(uri)
    experiment = tracking.find_experiment(mlflow)
    if experiment is None:
        return []
    found = mlflow.search_runs([experiment], filter_string=f"tags.`{tracking.KIND_TAG}` = 'search'",
                               order_by=["attributes.start_time DESC"], max_results=1000)
    out = []
    for run in found:
        metric = run.data.tags["metric"].split(",")[0]
        status = run_status(run)
        if status.kind == "running" and not driver_alive(run):
            status = INTERRUPTED
        children = tracking.trial_runs(mlflow, uri, run.info.run_id)
        ended = sum(run_status(c).kind not in ("running", "interrupted") for c in children)
        planned = int(run.data.tags.get(tracking.SAMPLES_TAG, len(children)))
        out.append({"name": run.data.tags.get(tracking.SEARCH_TAG, run.info.run_name),
                    "recipe": run.data.tags.get("recipe"), "status": status, "trials": len(children),
                    "ended": ended, "planned": planned, "metric": metric,
                    "best": run.data.metrics.get(f"best_{metric}"), "best_trial": run.data.tags.get("best_trial", "-")})
    return out


def driver_alive(run: Any) -> bool:
    """Whether the driver of a RUNNING search still runs: its process, when it ran on this host;
    else a heartbeat newer than three beats."""
    host, _, pid = run.data.tags.get(tracking.DRIVER_TAG, "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    beat = float(run.data.tags.get(tracking.HEARTBEAT_TAG, run.info.start_time / 1000))
    return time.time() - beat < 3 * tracking.HEARTBEAT_S


def export_best(uri: str, name: str, out: Path, top: int = 1) -> list[Path]:
    """Write the fully resolved config of the best completed trial (``top`` > 1: a folder of the K
    best, ranked) in the flat YAML format `lvseg train` reads."""
    mlflow = tracking.open_store(uri)
    parent = tracking.find_search_run(mlflow, uri, name)
    metric = parent.data.tags["metric"].split(",")[0]
    mode = parent.data.tags["mode"].split(",")[0]
    rows = [r for r in ranked_trials(uri, parent.info.run_id, metric, mode, []) if r["status"].kind == "completed"]
    if not rows:
        raise LookupError(f"search {name!r} has no completed trial to export")
    chosen = rows[:top]
    if top == 1:
        targets = [out]
    else:
        out.mkdir(parents=True, exist_ok=True)
        targets = [out / f"{rank:02d}-{_slug(row['name'])}.yaml" for rank, row in enumerate(chosen, 1)]
    for row, target in zip(chosen, targets, strict=True):
        with tempfile.TemporaryDirectory() as tmp:
            config = yaml.safe_load(Path(mlflow.download_artifacts(row["run_id"], "config.yaml", tmp)).read_text())
        header = (f"# exported from search {name}, trial {row['name']}\n"
                  f"# best {metric} during the search: {row['score']}\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return targets


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]
