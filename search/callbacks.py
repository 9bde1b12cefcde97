"""The driver's tracking callback: close each trial's MLflow run with its true status, deliver what
trials journal, and keep the search's heartbeat (the console is search/console.py).

Only the driver sees why a trial ended (finished, stopped by the scheduler, its worker died), so
it writes the final status, through the trial's own journal so that it lands after everything the
trial logged. Trials append params, metrics and artifacts to their journals as they go; the driver
delivers those to the tracking store every DELIVER_S, from a thread of its own while Tune runs:
delivered from Tune's event loop, a trial's MLflow writes (~0.2 s on SQLite) held up the next
trial's start.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from lvseg.status import Status, failed
from search import tags
from search.journal import SEARCH, Journal
from search.results import TRIAL_NUMBER, final_status

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
    """Writes each trial's final status to its child run and keeps the parent run's heartbeat.
    Between Tune's ``setup`` and :meth:`close` a thread delivers the journals; otherwise each call
    delivers before it returns."""

    def __init__(self, journal_dir: Path, uri: str, parent_run_id: str, search: str) -> None:
        self.journal_dir, self.uri, self.parent_run_id, self.search = Path(journal_dir), uri, parent_run_id, search
        self.started: set[str] = set()
        self.statuses: dict[str, Status] = {}
        self.journals: dict[str, Journal] = {}
        self.undelivered: set[str] = set()  # writers that may hold lines not yet sent
        self.beat_at = self.delivered_at = 0.0
        self._threading()

    def _threading(self) -> None:
        self.guard = threading.Lock()  # the sets and dicts above, shared with the delivery thread
        self.wake, self.stopping = threading.Event(), threading.Event()
        self.thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its run config, callbacks included: without the thread and its locks."""
        return {k: v for k, v in self.__dict__.items() if k not in ("guard", "wake", "stopping", "thread")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._threading()

    def journal(self, writer: str) -> Journal:
        """The journal of a trial (or of the search), kept: it remembers run ids and failed tries."""
        with self.guard:
            if writer not in self.journals:
                self.journals[writer] = Journal(self.journal_dir, writer, self.uri, self.parent_run_id, self.search)
            return self.journals[writer]

    def deliver(self, force: bool = False) -> None:
        """Send what trials have journaled (at most every DELIVER_S unless ``force``): by waking the
        delivery thread when it runs, else here."""
        if self.thread is not None:
            if force:
                self.wake.set()
            return
        if force or time.monotonic() - self.delivered_at >= DELIVER_S:
            self._deliver_all()

    def _deliver_all(self) -> None:
        self.delivered_at = time.monotonic()
        with self.guard:
            writers = sorted(self.undelivered)
        for writer in writers:
            left = self.journal(writer).deliver()
            with self.guard:
                if not left and (writer == SEARCH or writer in self.statuses):
                    self.undelivered.discard(writer)  # ended and all sent: nothing more will come

    def setup(self, **info: Any) -> None:
        """Tune starts: deliveries move off its event loop, onto a thread."""
        self.stopping.clear()
        self.thread = threading.Thread(target=self._deliver_loop, name="lvsearch-delivery", daemon=True)
        self.thread.start()

    def _deliver_loop(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(DELIVER_S)
            self.wake.clear()
            try:
                self._deliver_all()
            except Exception:  # e.g. a journal torn by a full disk: the others still go; the search's end says it
                logging.getLogger(__name__).exception("delivering the trial journals failed; delivery goes on")

    def close(self) -> None:
        """Stop the delivery thread; what it had not sent is sent by the search's end (which waits
        for a store that is down) or ``lvsearch sync``."""
        if self.thread is not None:
            self.stopping.set()
            self.wake.set()
            self.thread.join()
            self.thread = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        with self.guard:
            self.started.add(trial.trial_id)
            self.undelivered.add(trial.trial_id)

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
            self.journal(SEARCH).tags(SEARCH, {tags.HEARTBEAT_TAG: str(int(time.time()))})
            with self.guard:
                self.undelivered.add(SEARCH)
            self.deliver(force=True)

    def finish(self, trial_id: str, status: Status, config: dict[str, Any] | None = None) -> None:
        """End a trial's run (creating one for a trial that died before it made its own)."""
        params = {k: v for k, v in (config or {}).items() if k != TRIAL_NUMBER}
        self.journal(trial_id).end(trial_id, status, f"{self.search}-{trial_id}", params)
        with self.guard:
            self.statuses[trial_id] = status
            self.undelivered.add(trial_id)
        self.deliver(force=True)

    def unfinished(self) -> list[str]:
        """Trials that started in this driver and have not ended (an interrupted search's)."""
        with self.guard:
            return sorted(self.started - set(self.statuses))
