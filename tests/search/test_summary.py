"""The closing table of a search (search/summary.py)."""

from __future__ import annotations

from lvseg.status import COMPLETED
from search.summary import format_table

ROW = {"name": "s-t000 lr=0.01", "score": 0.5, "low": 0.4, "high": 0.6, "tied": False, "front": 0,
       "status": COMPLETED}


def test_a_search_on_synthetic_data_says_before_its_scores_that_they_are_not_a_result() -> None:
    caveats = "SYNTHETIC data (lvseg synth): cartoons, not echocardiograms; RANDOMLY initialised backbone (tiny)"
    summary = {"name": "s", "metric": "val_dice", "rows": [ROW], "counts": {"completed": 1}, "caveats": caveats}
    lines = format_table(summary).splitlines()
    assert lines[1] == f"NOTE: {caveats} - these numbers are not a result."
    assert lines[2].split() == ["rank", "val_dice", "95%", "interval", "status", "trial"]
    assert not any(line.startswith("NOTE") for line in format_table({**summary, "caveats": ""}).splitlines())
