"""Ranking the trials of a search so that it says when it cannot tell them apart.

Single objective: completed trials first, best first by ``best_<metric>``; a completed trial whose
95% interval (``best_<metric>_ci_low/high``, over videos at its best epoch) overlaps the best
trial's is ``tied`` with it: on these videos the data do not say which is better.

Several objectives (``nsga2``): there is no single best. Completed trials are ranked by Pareto
front (``front`` 1 holds the non-dominated ones: no other trial is at least as good in every
objective and better in one), then by the first objective. Ray Tune has no "set of best trials"
(ray issue 47358); this is it.
"""

from __future__ import annotations

import math
from typing import Any


def _better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def dominates(a: dict[str, float], b: dict[str, float], objectives: list[tuple[str, str]]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    no_worse = all(not _better(b[m], a[m], mode) for m, mode in objectives)
    return no_worse and any(_better(a[m], b[m], mode) for m, mode in objectives)


def fronts(scores: list[dict[str, float]], objectives: list[tuple[str, str]]) -> list[int]:
    """Pareto front number (1 = non-dominated) of each score dict (every objective present)."""
    rank, left, number = [0] * len(scores), set(range(len(scores))), 1
    while left:
        front = {i for i in left if not any(dominates(scores[j], scores[i], objectives) for j in left if j != i)}
        for i in front:
            rank[i] = number
        left -= front
        number += 1
    return rank


def rank(rows: list[dict[str, Any]], objectives: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Rows (each with ``status``, ``scores`` {metric: value or None}, ``low``/``high`` of the first
    metric) sorted best first, each given ``front`` (None unless scored in every objective) and
    ``tied``."""
    (first, mode), *_ = objectives
    scored = [r for r in rows if r["status"].kind == "completed" and all(_finite(r["scores"].get(m))
                                                                          for m, _ in objectives)]
    for row, front in zip(scored, fronts([r["scores"] for r in scored], objectives), strict=True):
        row["front"] = front
    for row in rows:
        row.setdefault("front", None)
        row["score"] = row["scores"].get(first) if _finite(row["scores"].get(first)) else None

    def key(row: dict[str, Any]) -> tuple:
        missing = row["score"] is None
        value = 0.0 if missing else (-row["score"] if mode == "max" else row["score"])
        return (row["status"].kind != "completed", row["front"] or math.inf, missing, value)

    ranked = sorted(rows, key=key)
    best = ranked[0] if ranked and ranked[0]["front"] else None
    for row in ranked:
        row["tied"] = (best is not None and row is not best and len(objectives) == 1 and row["front"] is not None
                       and _overlap(row, best))
    return ranked


def tied_count(rows: list[dict[str, Any]]) -> int:
    """How many ranked rows are tied with the best."""
    return sum(row["tied"] for row in rows)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _overlap(row: dict[str, Any], best: dict[str, Any]) -> bool:
    if not all(_finite(r.get(k)) for r in (row, best) for k in ("low", "high")):
        return False
    return row["high"] >= best["low"] and row["low"] <= best["high"]
