"""What a person watching a search sees: one line per trial event (started, each epoch with its
metric, and how it ended: completed, pruned, diverged, failed) and a status line every STATUS_S.
The demo, which runs four searches on one page, shows only the status lines.
Everything else goes to the search's log file (search/driver.py)."""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune import Callback

from lvseg.status import Status
from search.callbacks import error_status
from search.results import EPOCHS, STATUS, TRIAL_NUMBER, final_status

STATUS_S = {"quiet": 30.0, "normal": 15.0, "verbose": 15.0}  # seconds between status lines, by detail


def trial_label(trial: Any) -> str:
    number = (trial.config or {}).get(TRIAL_NUMBER)
    return f"t{number:03d}" if isinstance(number, int) else trial.trial_id


def clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60:d}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes:02d}:{seconds:02d}"


class Console(Callback):
    """A status line every STATUS_S[detail] (trials done by how they ended, running, the best so far with
    its interval, elapsed and estimated remaining time); unless ``detail`` is quiet, a line per
    trial event too (started, each epoch, how it ended)."""

    def __init__(self, metric: str, mode: str, samples: int, searched: tuple[str, ...], detail: str) -> None:
        self.metric, self.mode, self.samples, self.searched = metric, mode, samples, searched
        self.quiet, self.status_s = detail == "quiet", STATUS_S[detail]
        self.started = time.monotonic()
        self.status_at = self.started
        self.ended: dict[str, Status] = {}
        self.running: set[str] = set()
        self.best: tuple[float, float, float, str] | None = None

    def line(self, text: str) -> None:
        print(f"  {clock(time.monotonic() - self.started)}  {text}", flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        if not self.quiet:
            picked = " ".join(f"{k}={_short(trial.config[k])}" for k in self.searched if k in trial.config)
            self.line(f"{trial_label(trial)} started   {picked}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        status = Status.parse(str(result.get(STATUS, "running")))
        if not self.quiet and status.kind in ("running", "completed"):
            self.line(f"{trial_label(trial)} epoch {result['epoch']}/{result[EPOCHS]}  {self.metric} "
                      f"{result[self.metric]:.4f}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, final_status(trial.last_result))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, error_status(trial))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.line(f"{trial_label(trial)} worker died; retrying from its last checkpoint (failure {trial.num_failures})")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self.status_at >= self.status_s:
            self.status_at = time.monotonic()
            self.line(self.status())

    def _ended(self, trial: Any, status: Status) -> None:
        self.running.discard(trial.trial_id)
        self.ended[trial.trial_id] = status
        result = trial.last_result or {}
        score = result.get(f"best_{self.metric}")
        if status.kind == "completed" and isinstance(score, float) and math.isfinite(score):
            low, high = (result.get(f"best_{self.metric}_ci_{end}", math.nan) for end in ("low", "high"))
            if self.best is None or (score > self.best[0] if self.mode == "max" else score < self.best[0]):
                self.best = (score, low, high, trial_label(trial))
        if not self.quiet:
            self.line(f"{trial_label(trial)} {status}{_scored(self.metric, result)}")

    def status(self) -> str:
        """Trials done by how they ended, running, the best so far, elapsed and remaining time."""
        counts: dict[str, int] = {}
        for status in self.ended.values():
            counts[status.kind] = counts.get(status.kind, 0) + 1
        done = len(self.ended)
        kinds = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        text = f"{done}/{self.samples} done{f' ({kinds})' if kinds else ''}, {len(self.running)} running"
        if self.best is not None:
            score, low, high, label = self.best
            text += f"; best {self.metric} {score:.4f} [{low:.3f}, {high:.3f}] ({label})"
        elapsed = time.monotonic() - self.started
        if 0 < done < self.samples:
            text += f"; ~{clock(elapsed / done * (self.samples - done))} left"
        return text


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _scored(metric: str, result: dict) -> str:
    score = result.get(f"best_{metric}")
    if not isinstance(score, float) or not math.isfinite(score):
        return ""
    low, high = (result.get(f"best_{metric}_ci_{end}") for end in ("low", "high"))
    interval = f" [{low:.3f}, {high:.3f}]" if isinstance(low, float) and isinstance(high, float) else ""
    return f"  {metric} {score:.4f}{interval}  ({result.get('epoch', '?')} epochs)"
