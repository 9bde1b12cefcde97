from __future__ import annotations

from lvseg.status import Status
from search.ranking import dominates, fronts, rank

DONE = Status("completed")


def _row(name: str, score: float | None, low: float | None = None, high: float | None = None,
         status: Status = DONE, **scores: float) -> dict:
    return {"name": name, "status": status, "scores": {"val_dice": score, **scores}, "low": low, "high": high}


def test_trials_whose_interval_overlaps_the_best_are_tied() -> None:
    rows = rank([_row("c", 0.80, 0.70, 0.84), _row("a", 0.90, 0.85, 0.95), _row("b", 0.88, 0.84, 0.92),
                 _row("p", 0.95, 0.9, 0.99, Status("pruned", 1)), _row("f", None, status=Status("failed", reason="x"))],
                [("val_dice", "max")])
    assert [r["name"] for r in rows] == ["a", "b", "c", "p", "f"]  # completed first: a pruned score is partial
    assert [r["tied"] for r in rows] == [False, True, False, False, False]


def test_minimising_and_missing_intervals() -> None:
    rows = rank([_row("a", 0.3, 0.2, 0.4), _row("b", 0.1), _row("c", 0.2, 0.15, 0.25)], [("val_dice", "min")])
    assert [r["name"] for r in rows] == ["b", "c", "a"]
    assert not any(r["tied"] for r in rows)  # the best has no interval: nothing can be called tied with it


def test_pareto_fronts() -> None:
    objectives = [("val_dice", "max"), ("seconds", "min")]
    assert dominates({"val_dice": 0.9, "seconds": 1}, {"val_dice": 0.8, "seconds": 2}, objectives)
    assert not dominates({"val_dice": 0.9, "seconds": 3}, {"val_dice": 0.8, "seconds": 2}, objectives)
    scores = [{"val_dice": 0.9, "seconds": 3}, {"val_dice": 0.8, "seconds": 1}, {"val_dice": 0.7, "seconds": 2},
              {"val_dice": 0.6, "seconds": 4}]
    assert fronts(scores, objectives) == [1, 1, 2, 3]
    rows = rank([_row(str(i), s["val_dice"], seconds=s["seconds"]) for i, s in enumerate(scores)], objectives)
    assert [(r["name"], r["front"]) for r in rows] == [("0", 1), ("1", 1), ("2", 2), ("3", 3)]
