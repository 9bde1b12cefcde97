from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from search import console
from search.console import Console, clock


def _trial(number: int, result: dict | None = None, error: str | None = None, tmp_path: Path | None = None):
    error_file = None
    if error is not None and tmp_path is not None:
        error_file = tmp_path / f"t{number}.txt"
        error_file.write_text(f"Traceback (most recent call last):\n  File x\n{error}\n")
    return SimpleNamespace(trial_id=f"id{number}", config={"lr": 0.00123456, "loss": "dice", "_trial_number": number},
                           last_result=result or {}, error_file=str(error_file) if error_file else None,
                           get_error=lambda: None, num_failures=0)


def _ended(epoch: int, status: str, score: float | None = None) -> dict:
    result = {"epoch": epoch, "epochs": 4, "status": status, "val_dice": 0.5}
    if score is not None:
        result.update(best_val_dice=score, best_val_dice_ci_low=score - 0.01, best_val_dice_ci_high=score + 0.01)
    return result


def _lines(capsys) -> list[str]:
    return [re.sub(r"^  \d\d:\d\d  ", "", line) for line in capsys.readouterr().out.splitlines()]


def test_every_trial_event_gets_one_line(capsys, tmp_path: Path) -> None:
    shown = Console("val_dice", "max", 4, ("lr", "loss"), "normal")
    shown.on_trial_start(0, [], _trial(0))
    shown.on_trial_result(0, [], _trial(0), {"epoch": 1, "epochs": 4, "status": "running", "val_dice": 0.61234})
    shown.on_trial_complete(0, [], _trial(0, _ended(4, "completed", 0.8)))
    shown.on_trial_complete(0, [], _trial(1, _ended(1, "running", 0.3)))
    shown.on_trial_complete(0, [], _trial(2, _ended(2, "diverged at epoch 2: non-finite bce loss")))
    shown.on_trial_error(0, [], _trial(3, error="ValueError: bad lr", tmp_path=tmp_path))
    assert _lines(capsys) == [
        "t000 started   lr=0.00123 loss=dice",
        "t000 epoch 1/4  val_dice 0.6123",
        "t000 completed  val_dice 0.8000 [0.790, 0.810]  (4 epochs)",
        "t001 pruned at epoch 1  val_dice 0.3000 [0.290, 0.310]  (1 epochs)",
        "t002 diverged at epoch 2: non-finite bce loss",
        "t003 failed: ValueError: bad lr"]


def test_quiet_shows_only_status_lines(capsys, monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: now[0])
    shown = Console("val_dice", "max", 2, ("lr",), "quiet")
    shown.on_trial_start(0, [], _trial(0))
    shown.on_trial_result(0, [], _trial(0), {"epoch": 1, "epochs": 4, "status": "running", "val_dice": 0.6})
    shown.on_trial_complete(0, [], _trial(0, _ended(4, "completed", 0.8)))
    now[0] = 30.0
    shown.on_step_end(0, [])
    assert _lines(capsys) == ["1/2 done (1 completed), 0 running; best val_dice 0.8000 [0.790, 0.810] (t000); "
                              "~00:30 left"]


def test_the_status_line_counts_trials_and_tracks_the_best_with_its_interval(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: now[0])
    shown = Console("val_dice", "max", 4, ("lr",), "quiet")
    for number in range(3):
        shown.on_trial_start(0, [], _trial(number))
    assert shown.status() == "0/4 done, 3 running"
    now[0] += 60
    shown.on_trial_complete(0, [], _trial(0, _ended(4, "completed", 0.7)))
    shown.on_trial_complete(0, [], _trial(1, _ended(4, "completed", 0.8)))
    shown.on_trial_complete(0, [], _trial(2, _ended(1, "running", 0.9)))  # pruned: never the best
    assert shown.status() == ("3/4 done (2 completed, 1 pruned), 0 running; best val_dice 0.8000 [0.790, 0.810] "
                              "(t001); ~00:20 left")


def test_a_minimised_metric_keeps_the_lowest(monkeypatch) -> None:
    shown = Console("ef_mae", "min", 2, ("lr",), "quiet")
    for number, score in ((0, 9.0), (1, 4.0)):
        result = {"epoch": 4, "epochs": 4, "status": "completed", "ef_mae": score, "best_ef_mae": score}
        shown.on_trial_complete(0, [], _trial(number, result))
    assert "best ef_mae 4.0000 [nan, nan] (t001)" in shown.status()


def test_status_lines_come_every_status_s(monkeypatch, capsys) -> None:
    now = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: now[0])
    shown = Console("val_dice", "max", 4, ("lr",), "normal")
    for second in range(0, 46):
        now[0] = float(second)
        shown.on_step_end(0, [])
    assert [line.split("  ", 2)[1] for line in capsys.readouterr().out.splitlines()] == ["00:15", "00:30", "00:45"]


@pytest.mark.parametrize(("seconds", "text"), [(5, "00:05"), (754, "12:34"), (3723, "1:02:03")])
def test_clock(seconds: float, text: str) -> None:
    assert clock(seconds) == text
