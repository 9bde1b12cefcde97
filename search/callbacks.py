"""Driver-side Tune callbacks: close each trial's MLflow run with its true status, keep the search's
heartbeat, and print progress.

Only the driver sees why a trial ended (finished, stopped by the scheduler, its worker died), so
it writes the final status, through the trial's own journal so that it lands after everything the
trial logged; the trial itself logs params, metrics and artifacts as it goes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from lvseg.status import Status, failed
from search import tracking
from search.journal import SEARCH, Journal
from search.results import final_status
from search.space import TRIAL_NUMBER

WORKER_DIED = ("ActorDiedError", "RayActorError", "WorkerCrashedError", "NodeDiedError", "ActorUnavailableError",
               "died unexpectedly", "OutOfMemoryError")


def error_status(trial: Any) -> Status:
    """A trial that reached Tune as an error: its worker died (after every retry), or the last
    line of the traceback for anything else."""
    path = getattr(trial, "error_file", None)
    text = Path(path).read_text() if path and Path(path).is_file() else str(trial.get_error() or "")
    if any(marker in text for marker in WORKER_DIED):
        return failed(f"worker died ({int(getattr(trial, 'num_failures', 0) or 1)} attempts)")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return failed(lines[-1] if lines else "unknown error")


class TrackingCallback(Callback):
    """Writes each trial's final status to its child run and keeps the parent run's heartbeat."""

    def __init__(self, journal_dir: Path, uri: str, parent_run_id: str, search: str) -> None:
        self.journal_dir, self.uri, self.parent_run_id, self.search = Path(journal_dir), uri, parent_run_id, search
        self.started: set[str] = set()
        self.statuses: dict[str, Status] = {}
        self.beat_at = 0.0

    def journal(self, writer: str) -> Journal:
        return Journal(self.journal_dir, writer, self.uri, self.parent_run_id, self.search)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finish(trial.trial_id, final_status(trial.last_result), trial.config)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finish(trial.trial_id, error_status(trial), trial.config)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self.beat_at >= tracking.HEARTBEAT_S:
            self.beat_at = time.monotonic()
            beat = self.journal(SEARCH)
            beat.tags(SEARCH, {tracking.HEARTBEAT_TAG: str(int(time.time()))})
            beat.deliver()

    def finish(self, trial_id: str, status: Status, config: dict[str, Any] | None = None) -> None:
        """End a trial's run (creating one for a trial that died before it made its own)."""
        self.statuses[trial_id] = status
        params = {k: v for k, v in (config or {}).items() if k != TRIAL_NUMBER}
        journal = self.journal(trial_id)
        journal.end(trial_id, status, f"{self.search}-{trial_id}", params)
        journal.deliver()

    def unfinished(self) -> list[str]:
        """Trials that started in this driver and have not ended (an interrupted search's)."""
        return sorted(self.started - set(self.statuses))


class ProgressCallback(Callback):
    """One console line per epoch result and per finished trial."""

    def __init__(self, metric: str) -> None:
        self.metric, self.started = metric, time.monotonic()

    def _line(self, trial: Any, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {trial.trial_id}  {text}", flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if Status.parse(str(result.get("status", "running"))).kind in ("running", "completed"):
            self._line(trial, f"epoch {result['epoch']}/{result['epochs']}  {self.metric} {result[self.metric]:.4f}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, str(final_status(trial.last_result)))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, str(error_status(trial)))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, f"worker died; retrying from its last checkpoint (failure {trial.num_failures})")
