"""How a run or a trial ended: one small value, written and parsed here and nowhere else.

Its text is what people read (MLflow's ``lvsearch.status`` tag, the console, ``metrics.json``)::

    running | completed | pruned at epoch 3 | diverged at epoch 2: non-finite bce loss
    stopped at epoch 2: RuntimeError: ... | failed: ValueError: ... | interrupted

``completed``, ``pruned`` and ``diverged`` are outcomes of a search (a configuration that blew up
is an answer, not an error); ``failed`` is an error; ``interrupted`` can be resumed. ``stopped``
is a run whose caller stopped it from its report callback (``lvseg`` outside a search).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("running", "completed", "pruned", "diverged", "stopped", "failed", "interrupted")
AT_EPOCH = ("pruned", "diverged", "stopped")
OUTCOMES = ("completed", "pruned", "diverged")
REASON_CHARS = 300  # a reason is one line; tracebacks go to files
MLFLOW_STATES = {"running": "RUNNING", "completed": "FINISHED", "pruned": "KILLED", "stopped": "KILLED",
                 "interrupted": "KILLED", "diverged": "FAILED", "failed": "FAILED"}
OPTUNA_STATES = {"completed": "COMPLETE", "pruned": "PRUNED", "stopped": "PRUNED", "diverged": "FAIL",
                 "failed": "FAIL"}
_TEXT = re.compile(r"^(?P<kind>[a-z]+)(?: at epoch (?P<epoch>\d+))?(?:: (?P<reason>.*))?$", re.DOTALL)


def one_line(text: str) -> str:
    """``text`` folded onto one line and cut to REASON_CHARS characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= REASON_CHARS else flat[:REASON_CHARS - 3] + "..."


@dataclass(frozen=True)
class Status:
    """``kind`` is one of KINDS; ``epoch`` (1-based) is set exactly for pruned, diverged and
    stopped; ``reason`` is one line (empty for running, completed, pruned and interrupted)."""

    kind: str
    epoch: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"status kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if (self.epoch is not None) != (self.kind in AT_EPOCH):
            raise ValueError(f"status {self.kind!r} {'needs' if self.kind in AT_EPOCH else 'takes no'} an epoch")
        if self.kind == "failed" and not self.reason:
            raise ValueError("a failed status needs a reason")
        object.__setattr__(self, "reason", one_line(self.reason) if self.reason else "")

    def __str__(self) -> str:
        text = self.kind if self.epoch is None else f"{self.kind} at epoch {self.epoch}"
        return f"{text}: {self.reason}" if self.reason else text

    @classmethod
    def parse(cls, text: str) -> Status:
        """The inverse of ``str``; raises ValueError on text no Status writes."""
        match = _TEXT.match(text.strip())
        if match is None:
            raise ValueError(f"not a status: {text!r}")
        epoch = match["epoch"]
        return cls(match["kind"], int(epoch) if epoch else None, match["reason"] or "")

    @property
    def outcome(self) -> bool:
        """True for what a search produces (completed, pruned, diverged), False for errors,
        interruptions and runs still going."""
        return self.kind in OUTCOMES

    @property
    def mlflow_state(self) -> str:
        """MLflow's run state: FINISHED, KILLED (pruned, stopped, interrupted), FAILED or RUNNING."""
        return MLFLOW_STATES[self.kind]

    @property
    def optuna_state(self) -> str | None:
        """Optuna's trial state name, or None for a trial that has not ended (running, interrupted)."""
        return OPTUNA_STATES.get(self.kind)


RUNNING = Status("running")
COMPLETED = Status("completed")
INTERRUPTED = Status("interrupted")


def pruned(epoch: int) -> Status:
    return Status("pruned", epoch)


def diverged(epoch: int, reason: str = "") -> Status:
    return Status("diverged", epoch, reason)


def stopped(epoch: int, reason: str = "") -> Status:
    return Status("stopped", epoch, reason)


def failed(reason: str) -> Status:
    return Status("failed", reason=reason or "unknown error")


def failed_from(error: BaseException) -> Status:
    """``failed: <ExceptionType>: <message>``."""
    return failed(f"{type(error).__name__}: {error}")
