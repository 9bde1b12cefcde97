"""Read searches back from MLflow: rank their trials, list them, export the best configs."""

from __future__ import annotations

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
from search.ranking import rank, tied_count
from search.tags import CAVEATS_TAG

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


def ranked_trials(uri: str, parent_run_id: str, metrics: list[str], modes: list[str],
                  searched: list[str]) -> list[dict[str, Any]]:
    """Child runs of a search ranked by :func:`search.ranking.rank`: name, status, scores, the
    first metric's interval, front, tied, and the searched params."""
    first = metrics[0]
    rows = []
    for run in tracking.trial_runs(tracking.client(uri), uri, parent_run_id):
        values = run.data.metrics
        rows.append({"run_id": run.info.run_id, "name": run.info.run_name or run.info.run_id,
                     "status": run_status(run), "scores": {m: values.get(f"best_{m}") for m in metrics},
                     "low": values.get(f"best_{first}_ci_low"), "high": values.get(f"best_{first}_ci_high"),
                     "params": {k: run.data.params.get(k) for k in searched}, "metrics": dict(values),
                     "start": run.info.start_time, "end": run.info.end_time})
    return rank(rows, list(zip(metrics, modes, strict=True)))


def search_summaries(uri: str) -> list[dict[str, Any]]:
    """Every search in the store, newest first, with its best trial and how it stands. A search
    whose driver is gone without ending it (killed with SIGKILL, its machine lost) is reported as
    interrupted, with the trials it has left. Reads only: a store that does not exist is an error."""
    mlflow = tracking.open_store(uri)
    experiment = tracking.find_experiment(mlflow)
    if experiment is None:
        return []
    return [_summary_of(mlflow, uri, run) for run in tracking.search_parent_runs(mlflow, experiment)]


def _summary_of(mlflow: Any, uri: str, run: Any) -> dict[str, Any]:
    metrics, modes = run.data.tags["metric"].split(","), run.data.tags["mode"].split(",")
    status = run_status(run)
    if status.kind == "running" and not driver_alive(run):
        status = INTERRUPTED
    rows = ranked_trials(uri, run.info.run_id, metrics, modes, [])
    ended = sum(row["status"].kind not in ("running", "interrupted") for row in rows)
    best = rows[0] if rows and rows[0]["front"] else None
    return {"name": run.data.tags.get(tracking.SEARCH_TAG, run.info.run_name), "recipe": run.data.tags.get("recipe"),
            "status": status, "trials": len(rows), "ended": ended,
            "planned": int(run.data.tags.get(tracking.SAMPLES_TAG, len(rows))), "metric": metrics[0], "best": best,
            "tied": tied_count(rows), "front": sum(row["front"] == 1 for row in rows),
            "objectives": len(metrics), "caveats": run.data.tags.get(CAVEATS_TAG, "")}


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


def export_best(uri: str, name: str, out: Path, top: int = 1, pareto: bool = False) -> dict[str, Any]:
    """Write the fully resolved config of the best completed trial in the flat YAML format `lvseg
    train` reads; ``top`` > 1: a folder of the K best, ranked; ``pareto``: a folder of every
    non-dominated trial. Returns the paths and what a person should know: the trials tied with the
    best (intervals overlapping), and the size of the Pareto front."""
    mlflow = tracking.open_store(uri)
    parent = tracking.find_search_run(mlflow, uri, name)
    metrics, modes = parent.data.tags["metric"].split(","), parent.data.tags["mode"].split(",")
    rows = [r for r in ranked_trials(uri, parent.info.run_id, metrics, modes, []) if r["status"].kind == "completed"]
    if not rows:
        raise LookupError(f"search {name!r} has no completed trial to export")
    front = [r for r in rows if r["front"] == 1]
    chosen = front if pareto else rows[:top]
    targets = [out] if len(chosen) == 1 and not pareto and top == 1 else [
        out / f"{rank:02d}-{_slug(row['name'])}.yaml" for rank, row in enumerate(chosen, 1)]
    caveats = parent.data.tags.get(CAVEATS_TAG, "")
    for row, target in zip(chosen, targets, strict=True):
        with tempfile.TemporaryDirectory() as tmp:
            config = yaml.safe_load(Path(mlflow.download_artifacts(row["run_id"], "config.yaml", tmp)).read_text())
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_header(name, row, metrics[0], caveats) + yaml.safe_dump(config, sort_keys=False))
    return {"paths": targets, "best": rows[0], "tied": tied_count(rows), "front": len(front),
            "metric": metrics[0], "objectives": len(metrics), "caveats": caveats}


def _header(search: str, row: dict[str, Any], metric: str, caveats: str) -> str:
    interval = f" (95% interval {row['low']:.4f}-{row['high']:.4f})" if row["low"] is not None else ""
    warning = f"# NOT A RESULT: {caveats}\n" if caveats else ""  # first: a score here is never read as one
    return (f"{warning}# exported from search {search}, trial {row['name']}\n"
            f"# best {metric} during the search: {row['score']}{interval}\n")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]
