"""``lvsearch demo``'s closing table (the demo's searches run in tests/search/test_runner.py)."""

from __future__ import annotations

from pathlib import Path

from search.demo import BANNER, _final_table


def test_the_closing_table_says_it_is_a_demo_and_retrains_into_the_demo_folder(tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    best = {"score": 0.5, "low": 0.4, "high": 0.6}
    rows = [{"recipe": "baseline", "best": best, "tied": 0, "config": str(out / "best-baseline.yaml")}]
    lines = _final_table(rows, "sqlite:///x.db", out).splitlines()
    assert lines[1] == BANNER
    assert f"baseline             0.5000 0.400-0.600      0  {out / 'best-baseline.yaml'}" in lines
    assert lines[-1].split() == [".venv/bin/lvseg", "train", str(out / "best-baseline.yaml"), "--out",
                                 str(out / "retrained")]
