"""``lvsearch sync NAME``: send what a search could not log while its tracking store was down,
then close its parent run with the numbers the store now holds."""

from __future__ import annotations

from pathlib import Path

from lvseg.status import INTERRUPTED
from search import tracking
from search.export import driver_alive, run_status
from search.journal import journals
from search.space import stored_space
from search.state import SearchState, default_storage
from search.summary import close_parent, summarise, trials_status


def sync_search(name: str, storage: Path | None = None) -> int:
    """Returns 0 once nothing waits, 1 if the store stopped answering again midway."""
    storage = (storage or default_storage()).resolve()
    state = SearchState.load(storage, name)
    mlflow = tracking.open_store(state.tracking_uri)
    pending = journals(state.journal_dir(storage), state.tracking_uri, state.parent_run_id, name)
    before = sum(j.pending() for j in pending)
    left = sum(j.deliver(force=True) for j in pending)
    if left:
        print(f"search {name}: sent {before - left} tracking operation(s); {left} still wait "
              f"({next(j.last_error for j in pending if j.pending())})")
        return 1
    parent = mlflow.get_run(state.parent_run_id)
    if run_status(parent).kind == "running" and driver_alive(parent):
        print(f"search {name}: sent {before} tracking operation(s); the search is still running")
        return 0
    space, _ = stored_space(state.space_text, state.space_file)  # the search as it ran
    summary = summarise(space, state)
    status = run_status(parent)  # the ending the driver wrote to its journal, now delivered
    if status.kind == "running":  # the driver ended without one (its tracking store was down)
        unended = any(row["status"].kind in ("running", "interrupted") for row in summary["rows"])
        status = INTERRUPTED if unended else trials_status(summary)
    left = close_parent(state, storage, summary, status)
    print(f"search {name}: sent {before} tracking operation(s); the search's run is {status}")
    return 0 if not left else 1

