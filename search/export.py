"""Read searches back from MLflow: rank their trials, list them, export the best configs."""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from search import tracking

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small YAML: no bar


def ranked_trials(uri: str, parent_run_id: str, metric: str, mode: str, searched: list[str]) -> list[dict[str, Any]]:
    """Child runs of a search, completed ones first, each group best first by ``best_<metric>``."""
    rows = []
    for run in tracking.trial_runs(tracking.client(uri), uri, parent_run_id):
        score = run.data.metrics.get(f"best_{metric}")
        if score is not None and not math.isfinite(score):
            score = None
        rows.append({"run_id": run.info.run_id, "name": run.info.run_name or run.info.run_id,
                     "status": run.data.tags.get(tracking.STATUS_TAG, run.info.status.lower()), "score": score,
                     "params": {k: run.data.params.get(k) for k in searched}})

    def key(row: dict[str, Any]) -> tuple:
        missing = row["score"] is None
        value = 0.0 if missing else (-row["score"] if mode == "max" else row["score"])
        return (row["status"] != "completed", missing, value)

    return sorted(rows, key=key)


def search_summaries(uri: str) -> list[dict[str, Any]]:
    """Every search in the store, newest first, with its best trial."""
    mlflow = tracking.client(uri)
    found = mlflow.search_runs([tracking.experiment_id(mlflow, uri)],
                               filter_string=f"tags.`{tracking.KIND_TAG}` = 'search'",
                               order_by=["attributes.start_time DESC"], max_results=1000)
    out = []
    for run in found:
        metric = run.data.tags.get("metric", "val_dice").split(",")[0]
        trials = int(sum(v for k, v in run.data.metrics.items() if k.startswith("trials_")))
        out.append({"name": run.data.tags.get(tracking.SEARCH_TAG, run.info.run_name),
                    "recipe": run.data.tags.get("recipe"), "status": run.info.status, "trials": trials,
                    "metric": metric,
                    "best": run.data.metrics.get(f"best_{metric}"), "best_trial": run.data.tags.get("best_trial", "-")})
    return out


def export_best(uri: str, name: str, out: Path, top: int = 1) -> list[Path]:
    """Write the fully resolved config of the best completed trial (``top`` > 1: a folder of the K
    best, ranked) in the flat YAML format `lvseg train` reads."""
    mlflow = tracking.client(uri)
    parent = tracking.find_search_run(mlflow, uri, name)
    metric = parent.data.tags.get("metric", "val_dice").split(",")[0]
    mode = parent.data.tags.get("mode", "max").split(",")[0]
    rows = [r for r in ranked_trials(uri, parent.info.run_id, metric, mode, []) if r["status"] == "completed"]
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
