"""The driver's tracking callback: close each trial's MLflow run with its true status, deliver what
trials journal, and keep the search's heartbeat (the console is search/console.py).

Only the driver sees why a trial ended (finished, stopped by the scheduler, its worker died), so
it writes the final status, through the trial's own journal so that it lands after everything the
trial logged. Trials append params, metrics and artifacts to their journals as they go; the driver
delivers those to the tracking store every DELIVER_S.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from lvseg.status import Status, failed
from search import tags
from search.journal import SEARCH, Journal
from search.results import final_status
from search.space import TRIAL_NUMBER

DELIVER_S = 1.0  # how often the driver sends what trials have journaled
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
        self.journals: dict[str, Journal] = {}
        self.beat_at = self.delivered_at = 0.0

    def journal(self, writer: str) -> Journal:
        """The journal of a trial (or of the search), kept: it remembers run ids and failed tries."""
        if writer not in self.journals:
            self.journals[writer] = Journal(self.journal_dir, writer, self.uri, self.parent_run_id, self.search)
        return self.journals[writer]

    def deliver(self, force: bool = False) -> None:
        """Send what running trials have journaled (at most every DELIVER_S unless ``force``)."""
        if not force and time.monotonic() - self.delivered_at < DELIVER_S:
            return
        self.delivered_at = time.monotonic()
        for trial_id in sorted(self.started - set(self.statuses)):
            self.journal(trial_id).deliver()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finish(trial.trial_id, final_status(trial.last_result), trial.config)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finish(trial.trial_id, error_status(trial), trial.config)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.deliver()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.deliver()
        if time.monotonic() - self.beat_at >= tags.HEARTBEAT_S:
            self.beat_at = time.monotonic()
            beat = self.journal(SEARCH)
            beat.tags(SEARCH, {tags.HEARTBEAT_TAG: str(int(time.time()))})
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
