from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from search import tracking
from search.callbacks import TrackingCallback, error_text, status_text


def _result(epoch: int, status: str, **extra) -> dict:
    return {"epoch": epoch, "epochs": 4, "trial_status": status, "val_dice": 0.5, **extra}


def test_status_text_names_what_happened() -> None:
    assert status_text(_result(4, "completed")) == "completed"
    assert status_text(_result(2, "running")) == "pruned at epoch 2"
    assert status_text(_result(1, "diverged", status_text="diverged at epoch 2: non-finite bce loss")) == (
        "diverged at epoch 2: non-finite bce loss")
    assert status_text(None) == "failed: no result reported"


def test_error_text_is_the_last_line_of_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "error.txt").write_text("Traceback (most recent call last):\n  File x\nValueError: bad lr\n\n")
    trial = SimpleNamespace(error_file=str(tmp_path / "error.txt"), get_error=lambda: None)
    assert error_text(trial) == "failed: ValueError: bad lr"


def test_a_trial_that_died_before_reporting_still_gets_exactly_one_failed_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    mlflow = tracking.client(uri)
    parent = tracking.start_search_run(mlflow, uri, "s", {}, "recipe: baseline", "s.yaml")
    (tmp_path / "error.txt").write_text("RuntimeError: CUDA out of memory\n")
    trial = SimpleNamespace(trial_id="abc", last_result={}, config={"lr": 0.1}, error_file=str(tmp_path / "error.txt"),
                            get_error=lambda: None)
    callback = TrackingCallback(uri, parent, "s")
    callback.on_trial_error(0, [], trial)
    (run,) = tracking.trial_runs(mlflow, uri, parent)
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.STATUS_TAG] == "failed: RuntimeError: CUDA out of memory"


def test_completed_and_pruned_trials_close_their_own_runs(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    mlflow = tracking.client(uri)
    parent = tracking.start_search_run(mlflow, uri, "s", {}, "recipe: baseline", "s.yaml")
    callback = TrackingCallback(uri, parent, "s")
    for trial_id, result in (("a", _result(4, "completed")), ("b", _result(1, "running"))):
        run_id = tracking.start_trial_run(mlflow, uri, parent, "s", trial_id, trial_id, {"lr": 0.1})
        callback.on_trial_complete(0, [], SimpleNamespace(trial_id=trial_id, last_result={**result,
                                                                                            "mlflow_run_id": run_id}))
    runs = {r.data.tags[tracking.TRIAL_TAG]: r for r in tracking.trial_runs(mlflow, uri, parent)}
    assert runs["a"].info.status == "FINISHED" and runs["b"].info.status == "KILLED"
    assert runs["b"].data.tags[tracking.STATUS_TAG] == "pruned at epoch 1"
    assert tracking.start_trial_run(mlflow, uri, parent, "s", "a", "again", {}) == runs["a"].info.run_id
