from __future__ import annotations

import pickle
import time
from pathlib import Path
from types import SimpleNamespace

from lvseg.status import Status
from search import tracking
from search.callbacks import TrackingCallback, error_status
from search.results import final_status


def _result(epoch: int, status: str, **extra) -> dict:
    return {"epoch": epoch, "epochs": 4, "status": status, "val_dice": 0.5, **extra}


def test_final_status_names_what_happened() -> None:
    assert str(final_status(_result(4, "completed"))) == "completed"
    assert str(final_status(_result(2, "running"))) == "pruned at epoch 2"
    assert str(final_status(_result(2, "diverged at epoch 2: non-finite bce loss"))) == (
        "diverged at epoch 2: non-finite bce loss")
    assert str(final_status(_result(1, "failed: ValueError: bad lr"))) == "failed: ValueError: bad lr"
    assert str(final_status(None)) == "failed: no result reported"


def _trial(tmp_path: Path, text: str, failures: int = 0, trial_id: str = "abc") -> SimpleNamespace:
    (tmp_path / f"{trial_id}.txt").write_text(text)
    return SimpleNamespace(trial_id=trial_id, last_result={}, config={"lr": 0.1, "_trial_number": 3},
                           error_file=str(tmp_path / f"{trial_id}.txt"), get_error=lambda: None,
                           num_failures=failures)


def test_error_status_is_the_last_line_of_the_traceback(tmp_path: Path) -> None:
    trial = _trial(tmp_path, "Traceback (most recent call last):\n  File x\nValueError: bad lr\n\n")
    assert str(error_status(trial)) == "failed: ValueError: bad lr"


def test_a_dead_worker_says_so_with_its_attempts(tmp_path: Path) -> None:
    trial = _trial(tmp_path, "ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing",
                   failures=4)
    assert str(error_status(trial)) == "failed: worker died (4 attempts)"


def _callback(tmp_path: Path) -> tuple[TrackingCallback, str, str]:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    parent = tracking.start_search_run(tracking.client(uri), uri, "s", {}, "recipe: baseline", "s.yaml")
    return TrackingCallback(tmp_path / "journal", uri, parent, "s"), uri, parent


def test_a_trial_that_died_before_reporting_still_gets_exactly_one_failed_run(tmp_path: Path) -> None:
    callback, uri, parent = _callback(tmp_path)
    callback.on_trial_error(0, [], _trial(tmp_path, "RuntimeError: CUDA out of memory\n"))
    (run,) = tracking.trial_runs(tracking.client(uri), uri, parent)
    assert run.info.status == "FAILED" and run.data.params == {"lr": "0.1"}
    assert run.data.tags[tracking.STATUS_TAG] == "failed: RuntimeError: CUDA out of memory"


def test_completed_and_pruned_trials_close_their_own_runs(tmp_path: Path) -> None:
    callback, uri, parent = _callback(tmp_path)
    mlflow = tracking.client(uri)
    for trial_id, result in (("a", _result(4, "completed")), ("b", _result(1, "running"))):
        tracking.start_trial_run(mlflow, uri, parent, "s", trial_id, trial_id, {"lr": 0.1})
        callback.on_trial_complete(0, [], SimpleNamespace(trial_id=trial_id, last_result=result, config={}))
    runs = {r.data.tags[tracking.TRIAL_TAG]: r for r in tracking.trial_runs(mlflow, uri, parent)}
    assert runs["a"].info.status == "FINISHED" and runs["b"].info.status == "KILLED"
    assert Status.parse(runs["b"].data.tags[tracking.STATUS_TAG]) == Status("pruned", 1)
    assert tracking.start_trial_run(mlflow, uri, parent, "s", "a", "again", {}) == runs["a"].info.run_id


def test_trials_started_but_not_ended_are_unfinished(tmp_path: Path) -> None:
    callback, _, _ = _callback(tmp_path)
    for trial_id in ("a", "b", "c"):
        callback.on_trial_start(0, [], SimpleNamespace(trial_id=trial_id))
    callback.finish("b", Status("completed"))
    assert callback.unfinished() == ["a", "c"]


def test_while_tune_runs_a_thread_delivers_and_close_stops_it(tmp_path: Path) -> None:
    callback, uri, parent = _callback(tmp_path)
    callback.setup()
    assert callback.thread is not None and callback.thread.is_alive()
    callback.on_trial_start(0, [], SimpleNamespace(trial_id="a"))
    callback.journal("a").start_run("a", "s-a", {"lr": 0.1}, {})
    callback.journal("a").metrics("a", {"val_dice": 0.5}, 1)
    callback.on_trial_complete(0, [], SimpleNamespace(trial_id="a", last_result=_result(1, "completed"), config={}))
    deadline = time.monotonic() + 30
    while callback.journal("a").pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    thread = callback.thread
    callback.close()
    assert not thread.is_alive() and callback.thread is None
    (run,) = tracking.trial_runs(tracking.client(uri), uri, parent)
    assert run.info.status == "FINISHED" and run.data.metrics == {"val_dice": 0.5}
    assert callback.undelivered == set()  # ended and sent: the thread let it go


def test_a_running_callback_pickles_as_tune_saves_it(tmp_path: Path) -> None:
    callback, _, _ = _callback(tmp_path)
    callback.setup()
    callback.on_trial_start(0, [], SimpleNamespace(trial_id="a"))
    copy = pickle.loads(pickle.dumps(callback))
    callback.close()
    assert copy.started == {"a"} and copy.thread is None and copy.unfinished() == ["a"]


def test_a_journal_that_cannot_be_read_does_not_stop_the_delivery_thread(tmp_path: Path) -> None:
    callback, uri, parent = _callback(tmp_path)
    callback.setup()
    callback.on_trial_start(0, [], SimpleNamespace(trial_id="torn"))
    (tmp_path / "journal").mkdir(exist_ok=True)
    (tmp_path / "journal" / "torn.jsonl").write_text('{"op": "start", "key": "to')  # a line cut short
    callback.deliver(force=True)
    time.sleep(0.5)
    callback.on_trial_start(0, [], SimpleNamespace(trial_id="a"))
    callback.journal("a").start_run("a", "s-a", {"lr": 0.1}, {})
    callback.on_trial_complete(0, [], SimpleNamespace(trial_id="a", last_result=_result(1, "completed"), config={}))
    deadline = time.monotonic() + 30
    while callback.journal("a").pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert callback.thread.is_alive()
    callback.close()
    (run,) = tracking.trial_runs(tracking.client(uri), uri, parent)
    assert run.info.status == "FINISHED"
