"""The tracking journal against real stores: a SQLite file, and a server address where nothing
listens (a store that is down, for real)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from lvseg.status import Status
from search import journal as journal_module
from search import tracking
from search.journal import SEARCH, Journal, journals


def _dead_uri() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed again: connections are refused


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, str]:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    parent = tracking.start_search_run(tracking.client(uri), uri, "s", {}, "recipe: baseline", "s.yaml")
    return uri, parent


def _log_a_trial(journal: Journal, tmp_path: Path) -> None:
    journal.start_run("t1", "s-t000 lr=0.1", {"lr": 0.1}, {"lvsearch.node": "127.0.0.1"})
    for epoch in (1, 2):
        journal.metrics("t1", {"val_dice": 0.1 * epoch, "epoch": epoch}, step=epoch)
    (tmp_path / "overlay.png").write_bytes(b"\x89PNG fake")
    journal.artifact("t1", tmp_path / "overlay.png")
    journal.end("t1", Status("completed"))


def test_everything_arrives_in_order_once(store, tmp_path: Path) -> None:
    uri, parent = store
    journal = Journal(tmp_path / "journal", "t1", uri, parent, "s")
    _log_a_trial(journal, tmp_path)
    assert journal.pending() == 5 and journal.deliver() == 0 and journal.pending() == 0
    (run,) = tracking.trial_runs(tracking.client(uri), uri, parent)
    history = tracking.client(uri).get_metric_history(run.info.run_id, "val_dice")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2)]
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1"}
    assert [a.path for a in tracking.client(uri).list_artifacts(run.info.run_id)] == ["overlay.png"]
    assert not list((tmp_path / "journal" / "t1-files").rglob("*.png"))  # the copy goes once delivered


def test_a_store_that_is_down_keeps_everything_until_it_answers(store, tmp_path: Path, monkeypatch) -> None:
    uri, parent = store
    down = Journal(tmp_path / "journal", "t1", _dead_uri(), parent, "s")
    _log_a_trial(down, tmp_path)
    started = time.monotonic()
    assert down.deliver() == 5 and time.monotonic() - started < 5 and "ConnectionError" in down.last_error
    assert down.deliver() == 5  # within RETRY_S a log call does not even try
    logged = [entry["ts"] for entry in down.entries() if entry["op"] in ("start", "end")]
    time.sleep(1.5)  # the store answers later than the trial ran
    # the same journal, the store back (here: its real address)
    back = Journal(tmp_path / "journal", "t1", uri, parent, "s")
    assert back.deliver() == 0
    (run,) = tracking.trial_runs(tracking.client(uri), uri, parent)
    assert len(tracking.client(uri).get_metric_history(run.info.run_id, "val_dice")) == 2
    assert [run.info.start_time, run.info.end_time] == logged  # the trial's times, not the delivery's


def test_a_resend_after_a_crash_duplicates_nothing(store, tmp_path: Path) -> None:
    uri, parent = store
    journal = Journal(tmp_path / "journal", "t1", uri, parent, "s")
    _log_a_trial(journal, tmp_path)
    journal.deliver()
    (tmp_path / "journal" / "t1.sent").write_text("0")  # as if the process died before saving its place
    again = Journal(tmp_path / "journal", "t1", uri, parent, "s")
    assert again.deliver() == 0
    mlflow = tracking.client(uri)
    (run,) = tracking.trial_runs(mlflow, uri, parent)  # found again by its trial tag, not created twice
    assert len(mlflow.get_metric_history(run.info.run_id, "val_dice")) == 2


def test_an_operation_the_store_rejects_is_kept_aside_and_the_rest_goes_on(store, tmp_path: Path) -> None:
    uri, parent = store
    journal = Journal(tmp_path / "journal", "t1", uri, parent, "s")
    journal.start_run("t1", "s-t000", {"lr": 0.1}, {})
    journal.start_run("t1", "s-t000", {}, {})
    journal.metrics("t1", {"val_dice": 0.5}, step=1)
    journal.deliver()
    with (tmp_path / "journal" / "t1.jsonl").open("a") as handle:  # a param changed after the fact
        handle.write(json.dumps({"op": "tags", "key": "t1", "tags": {"x" * 300: "too long a key"}}) + "\n")
    journal.metrics("t1", {"val_dice": 0.6}, step=2)
    assert journal.deliver() == 0
    rejected = (tmp_path / "journal" / "t1.rejected").read_text()
    assert "too long a key" in rejected
    (run,) = tracking.trial_runs(tracking.client(uri), uri, parent)
    assert len(tracking.client(uri).get_metric_history(run.info.run_id, "val_dice")) == 2


def test_last_step_counts_undelivered_epochs_too(store, tmp_path: Path) -> None:
    _, parent = store
    down = Journal(tmp_path / "journal", "t1", _dead_uri(), parent, "s")
    _log_a_trial(down, tmp_path)
    assert down.last_step("t1") == 2 and down.last_step("other") == 0


def test_the_search_journal_comes_last(store, tmp_path: Path) -> None:
    uri, parent = store
    for writer in (SEARCH, "b", "a"):
        Journal(tmp_path / "journal", writer, uri, parent, "s").tags(SEARCH if writer == SEARCH else writer, {})
    assert [j.writer for j in journals(tmp_path / "journal", uri, parent, "s")] == ["a", "b", SEARCH]
    assert journal_module.is_transient(ConnectionError()) and not journal_module.is_transient(
        type("E", (Exception,), {"error_code": "INVALID_PARAMETER_VALUE"})())
