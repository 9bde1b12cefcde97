"""A search read back from MLflow: its trials ranked, counted by how they ended, as a table; and
the parent run's closing numbers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lvseg.status import COMPLETED, KINDS, Status, failed
from search import tracking
from search.export import ranked_trials, run_status
from search.journal import SEARCH, Journal
from search.ranking import tied_count
from search.space import SearchSpace
from search.state import SearchState
from search.tags import CAVEATS_TAG, DESCRIPTION_TAG

WAIT_ENV = "LVSEARCH_TRACKING_WAIT_S"
WAIT_DEFAULT_S = 60.0  # at the end of a search, how long to wait for a tracking store that is down


def tracking_wait_s() -> float:
    """``$LVSEARCH_TRACKING_WAIT_S``, else 60 s: how long a search's ending waits for its tracking
    store before leaving the rest to `lvsearch sync`."""
    return float(os.environ.get(WAIT_ENV) or WAIT_DEFAULT_S)


def summarise(space: SearchSpace, state: SearchState) -> dict[str, Any]:
    """Every trial of the search, best first (name, status, score, searched params), and how many
    ended each way."""
    rows = ranked_trials(state.tracking_uri, state.parent_run_id, list(space.metric), list(space.mode),
                         [p.name for p in space.params])
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"].kind] = counts.get(row["status"].kind, 0) + 1
    parent = tracking.client(state.tracking_uri).get_run(state.parent_run_id)
    return {"name": state.name, "metric": space.metric[0], "rows": rows, "counts": counts,
            "objectives": len(space.metric), "caveats": parent.data.tags.get(CAVEATS_TAG, "")}


def counts_metrics(counts: dict[str, int]) -> dict[str, float]:
    """``trials_<kind>`` for every kind, zeros included, so that a later ending overwrites all."""
    return {f"trials_{kind}": float(counts.get(kind, 0)) for kind in KINDS}


def remaining(mlflow: Any, state: SearchState) -> tuple[int, int]:
    """(trials that have ended, trials the search plans)."""
    runs = tracking.trial_runs(mlflow, state.tracking_uri, state.parent_run_id)
    ended = sum(run_status(run).kind not in ("running", "interrupted") for run in runs)
    return ended, state.samples


def not_a_result(caveats: str) -> str:
    """The console's line for a search on synthetic data or random models (as `lvseg` prints it)."""
    return f"NOTE: {caveats} - these numbers are not a result."


def format_table(summary: dict[str, Any], limit: int = 20) -> str:
    """The closing table: counts, the caveats, then the best trials with their 95% interval; ``=``
    marks a trial tied with the best (its interval overlaps), a Pareto front number the
    several-metric case."""
    rows = summary["rows"][:limit]
    optuna = ", ".join(f"{v} {k}" for k, v in sorted(summary.get("optuna", {}).items()))
    tied = tied_count(summary["rows"])
    lines = [f"search {summary['name']}: " + ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items()))
             + (f" (Optuna study: {optuna})" if optuna else ""),
             *([not_a_result(summary["caveats"])] if summary.get("caveats") else []),
             f"{'rank':>4}  {summary['metric']:>10}  {'95% interval':<15}  {'status':<22} trial"]
    for rank, row in enumerate(rows, 1):
        score = "-" if row["score"] is None else f"{row['score']:.4f}"
        interval = f"{row['low']:.3f}-{row['high']:.3f}" if row["low"] is not None and row["score"] is not None else ""
        mark = "=" if row["tied"] else (f"F{row['front']}" if summary.get("objectives", 1) > 1 and row["front"] else "")
        lines.append(f"{rank:>4}  {score:>10}  {interval:<15}{mark:>2} {str(row['status'])[:22]:<22} {row['name']}")
    if tied:
        lines.append(f"= {tied} trial(s) tied with the best: their intervals overlap, these videos cannot tell them "
                     f"apart")
    if len(summary["rows"]) > limit:
        lines.append(f"... and {len(summary['rows']) - limit} more (`lvsearch report {summary['name']}`)")
    return "\n".join(lines)


def description(summary: dict[str, Any], status: Status, planned: int) -> str:
    """The parent run's description in the MLflow UI (Markdown): how the search ended, its best
    trial with the interval and ties, where the report is, and its caveats."""
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items()))
    lines = [f"Caveats: {summary['caveats']}."] if summary.get("caveats") else []  # first: never read as results
    lines.append(f"**Search {summary['name']}: {status}.** {len(summary['rows'])} of {planned} trials ran ({counts}).")
    best = summary["rows"][0] if summary["rows"] and summary["rows"][0]["status"].kind == "completed" else None
    if best is not None:
        interval = f" (95% interval {best['low']:.4f}-{best['high']:.4f})" if best["low"] is not None else ""
        tied = tied_count(summary["rows"])
        ties = (f"{tied} other trial(s) tied with it: their intervals overlap, these videos cannot tell them apart"
                if tied else "no other trial's interval overlaps its own")
        lines.append(f"Best: **{best['name']}**, {summary['metric']} {best['score']:.4f}{interval}; {ties}.")
    lines.append(f"Report: `report/report.html` in this run's artifacts (`lvsearch report {summary['name']}` "
                 f"writes it anew).")
    return "\n\n".join(lines)


def trials_status(summary: dict[str, Any]) -> Status:
    """A search that ran to its end: completed, or failed if any trial failed with an error."""
    bad = [row for row in summary["rows"] if row["status"].kind == "failed"]
    if bad:
        return failed(f"{len(bad)} of {len(summary['rows'])} trials failed, e.g. {bad[0]['name']}: "
                      f"{bad[0]['status'].reason}")
    return COMPLETED


def close_parent(state: SearchState, storage: Path, summary: dict[str, Any], status: Status) -> int:
    """Counts (rewritten at every ending, zeros included, so a resume leaves nothing stale), the
    best trial (its ``best_*`` metrics, intervals included, and how many trials tie with it: the
    parent's row in the MLflow runs table reads like the trial's), and the terminal state,
    through the search's journal. Returns what still waits."""
    journal = Journal(state.journal_dir(storage), SEARCH, state.tracking_uri, state.parent_run_id, state.name)
    metrics = counts_metrics(summary["counts"])
    best = summary["rows"][0] if summary["rows"] and summary["rows"][0]["status"].kind == "completed" else None
    if best is not None:
        metrics.update({k: v for k, v in best["metrics"].items() if k.startswith("best_")})
        metrics["trials_tied_with_best"] = float(tied_count(summary["rows"]))
        journal.tags(SEARCH, {"best_trial_run_id": best["run_id"], "best_trial": best["name"]})
    journal.metrics(SEARCH, metrics, step=0)
    journal.tags(SEARCH, {DESCRIPTION_TAG: description(summary, status, state.samples)})
    journal.end(SEARCH, status)
    return journal.deliver_within(tracking_wait_s())
