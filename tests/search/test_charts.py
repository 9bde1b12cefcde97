"""The report's pictures say what their colours mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvseg.status import COMPLETED, pruned
from search import charts
from search.space import load_space, parse_space


def _saved(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every figure the charts save from now on (closed, but whole)."""
    seen: list = []
    save = charts._save

    def looking(plt, fig, path, title, caveats):
        seen.append(fig)
        return save(plt, fig, path, title, caveats)

    monkeypatch.setattr(charts, "_save", looking)
    return seen


def _legend_texts(fig) -> list[str]:
    return [text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()]


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
    saved = _saved(monkeypatch)
    path = charts.slices(trials, space.params, "val_dice", tmp_path / "slices.png", "")
    assert path.stat().st_size > 0
    assert [_legend_texts(fig) for fig in saved] == [["completed", "pruned"]]


def test_parallel_lines_leave_out_what_a_trial_did_not_draw(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Momentum exists only under sgd: an adam trial's line skips that axis (it used to break there
    and vanish between its neighbours), and the title says what a missing dot means."""
    space = parse_space({"recipe": "baseline", "params": {
        "optimizer": {"type": "choice", "values": ["sgd", "adam"]},
        "momentum": {"type": "uniform", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd"}},
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}, "space.yaml", "")
    trials = [{"params": {"optimizer": "sgd", "momentum": 0.9, "lr": 1e-3}, "score": 0.5},
              {"params": {"optimizer": "adam", "momentum": None, "lr": 1e-2}, "score": 0.7}]
    saved = _saved(monkeypatch)
    charts.parallel(trials, space.params, "val_dice", "max", tmp_path / "parallel.png", "")
    lines = {tuple(line.get_xdata()) for line in saved[0].axes[0].get_lines()}
    assert lines == {(0, 1, 2, 3), (0, 2, 3)}  # optimizer, momentum, lr, val_dice
    assert "no dot on an axis: not drawn for that trial" in saved[0].get_suptitle()


def _tick_boxes(fig, ax) -> list:
    """Where each x tick label is drawn, in pixels of the saved figure (closed: a new canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    return [label.get_window_extent(renderer) for label in ax.get_xticklabels() if label.get_text()]


def test_slices_choice_labels_never_overlap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ten SAM strategies' names, tilted, ran into each other under their panel; three short
    optimizer names stay level."""
    space = load_space(Path(__file__).parents[2] / "spaces" / "demo" / "sam_prompts.yaml")
    strategies = space.params[0].values
    trials = [{"params": {"strategy": s, "mask_choice": "best_score"}, "score": 0.1 + 0.01 * i, "status": COMPLETED}
              for i, s in enumerate(strategies)]
    saved = _saved(monkeypatch)
    charts.slices(trials, space.params, "val_dice", tmp_path / "slices.png", "")
    boxes = _tick_boxes(saved[0], saved[0].axes[0])
    assert len(boxes) == len(strategies) == 10
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert charts._choice_rotation(["sgd", "adam", "adamw"]) == 0


def test_parallel_axes_name_their_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each axis says what its height means: every choice where it sits, a range's two ends, and
    the scores' lowest and highest (the axes said only "low" and "high")."""
    space = parse_space({"recipe": "baseline", "params": {
        "optimizer": {"type": "choice", "values": ["sgd", "adam", "adamw"]},
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1}}}, "space.yaml", "")
    trials = [{"params": {"optimizer": "adam", "lr": 1e-3}, "score": 0.25},
              {"params": {"optimizer": "sgd", "lr": 1e-2}, "score": 0.75}]
    saved = _saved(monkeypatch)
    charts.parallel(trials, space.params, "val_dice", "max", tmp_path / "parallel.png", "")
    placed = {(text.xy[0], text.xy[1], text.get_text()) for text in saved[0].axes[0].texts}
    assert placed == {(0, 0.0, "sgd"), (0, 0.5, "adam"), (0, 1.0, "adamw"), (1, 0.0, "0.0001"), (1, 1.0, "0.1"),
                      (2, 0.0, "0.250"), (2, 1.0, "0.750")}
    assert [label.get_text() for label in saved[0].axes[0].get_yticklabels()] == []
