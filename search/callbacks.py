"""Driver-side Tune callbacks: close each trial's MLflow run with its true status, and print progress.

Only the driver sees why a trial ended (finished, stopped by the scheduler, crashed), so it writes
the final status; the trial itself logs params, metrics and artifacts as it goes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from search import tracking
from search.samplers import TRIAL_STATUS, was_pruned


def status_text(result: dict[str, Any] | None) -> str:
    if not result:
        return "failed: no result reported"
    if result.get(TRIAL_STATUS) == "diverged":
        return result.get("status_text", "diverged")
    if was_pruned(result):
        return f"pruned at epoch {result['epoch']}"
    return "completed"


def error_text(trial: Any) -> str:
    """The last line of the trial's traceback (the exception and its message)."""
    path = getattr(trial, "error_file", None)
    text = Path(path).read_text() if path and Path(path).is_file() else str(trial.get_error() or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"failed: {lines[-1][:400] if lines else 'unknown error'}"


class TrackingCallback(Callback):
    """Writes each trial's final status to its child run (creating one if it died before starting)."""

    def __init__(self, uri: str, parent_run_id: str, search: str) -> None:
        self.uri, self.parent_run_id, self.search = uri, parent_run_id, search
        self.statuses: dict[str, str] = {}

    def _run_id(self, trial: Any) -> str:
        run_id = (trial.last_result or {}).get("mlflow_run_id")
        if run_id:
            return run_id
        return tracking.start_trial_run(tracking.client(self.uri), self.uri, self.parent_run_id, self.search,
                                        trial.trial_id, f"{self.search}-{trial.trial_id}", trial.config)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, status_text(trial.last_result))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, error_text(trial))

    def _finish(self, trial: Any, status: str) -> None:
        self.statuses[trial.trial_id] = status
        tracking.finish_run(tracking.client(self.uri), self._run_id(trial), status)


class ProgressCallback(Callback):
    """One console line per epoch result and per finished trial."""

    def __init__(self, metric: str) -> None:
        self.metric, self.started = metric, time.monotonic()

    def _line(self, trial: Any, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {trial.trial_id}  {text}", flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get(TRIAL_STATUS) != "diverged":
            self._line(trial, f"epoch {result['epoch']}/{result['epochs']}  {self.metric} {result[self.metric]:.4f}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, status_text(trial.last_result))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, error_text(trial))
