from __future__ import annotations

import pytest

from lvseg import status
from lvseg.status import Status

EVERY_KIND = [status.RUNNING, status.COMPLETED, status.pruned(3), status.diverged(2, "non-finite bce loss"),
              status.stopped(1, "RuntimeError: stop"), status.failed("ValueError: bad lr"), status.INTERRUPTED]


@pytest.mark.parametrize("value", EVERY_KIND, ids=str)
def test_text_round_trips(value: Status) -> None:
    assert Status.parse(str(value)) == value


def test_the_texts_people_read() -> None:
    assert [str(s) for s in EVERY_KIND] == [
        "running", "completed", "pruned at epoch 3", "diverged at epoch 2: non-finite bce loss",
        "stopped at epoch 1: RuntimeError: stop", "failed: ValueError: bad lr", "interrupted"]


def test_states_in_mlflow_and_optuna() -> None:
    assert [s.mlflow_state for s in EVERY_KIND] == ["RUNNING", "FINISHED", "KILLED", "FAILED", "KILLED", "FAILED",
                                                    "KILLED"]
    assert [s.optuna_state for s in EVERY_KIND] == [None, "COMPLETE", "PRUNED", "FAIL", "PRUNED", "FAIL", None]


def test_outcomes_are_answers_not_errors() -> None:
    assert [s.kind for s in EVERY_KIND if s.outcome] == ["completed", "pruned", "diverged"]


def test_a_reason_is_one_short_line() -> None:
    value = status.failed("Traceback\n  line\nValueError: " + "x" * 1000)
    assert "\n" not in str(value) and len(value.reason) == status.REASON_CHARS
    assert status.failed_from(KeyError("lr")).reason == "KeyError: 'lr'"


@pytest.mark.parametrize("bad", ["finished", "pruned", "completed at epoch 2", "failed", ""])
def test_text_no_status_writes_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Status.parse(bad)
