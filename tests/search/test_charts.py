"""The report's pictures say what their colours mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvseg.status import COMPLETED, pruned
from search import charts
from search.space import parse_space


def _legends(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The legend texts of every figure the charts save from now on."""
    seen: list[list[str]] = []
    save = charts._save

    def looking(plt, fig, path, title, caveats):
        seen.append([text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()])
        return save(plt, fig, path, title, caveats)

    monkeypatch.setattr(charts, "_save", looking)
    return seen


@pytest.mark.parametrize("names", [["lr", "batch_size"], ["lr", "batch_size", "optimizer", "loss"]])
def test_slices_say_which_colour_is_which_ending(names: list[str], monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """Two params fill their grid (the legend goes in a corner); four leave two panels of three
    columns spare (the legend takes one). Either way it lists exactly the endings present."""
    every = {"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
             "batch_size": {"type": "choice", "values": [2, 4]},
             "optimizer": {"type": "choice", "values": ["sgd", "adam"]},
             "loss": {"type": "choice", "values": ["bce", "dice"]}}
    space = parse_space({"recipe": "baseline", "params": {n: every[n] for n in names}}, "space.yaml", "")
    trials = [{"params": {"lr": 1e-3 * (i + 1), "batch_size": 2 + 2 * (i % 2), "optimizer": "sgd", "loss": "bce"},
               "score": 0.1 * i, "status": COMPLETED if i % 3 else pruned(1)} for i in range(6)]
    legends = _legends(monkeypatch)
    path = charts.slices(trials, space.params, "val_dice", tmp_path / "slices.png", "")
    assert path.stat().st_size > 0
    assert legends == [["completed", "pruned"]]
