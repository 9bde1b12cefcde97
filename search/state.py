"""Where a search lives on disk, and what `resume`, `sync`, `list` and `export` need to find it.

    <storage>/<name>/lvsearch.json   this SearchState
    <storage>/<name>/journal/        tracking journals (search/journal.py)
    <storage>/<name>/lvsearch.log    tracebacks of driver errors
    <storage>/<name>/...             Ray Tune's experiment state and trial checkpoints
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from search.journal import FOLDER

STATE_FILE = "lvsearch.json"
LOG_FILE = "lvsearch.log"
STORAGE_DEFAULT = "lvsearch-runs"


def default_storage() -> Path:
    """``$LVSEARCH_STORAGE``, else ``./lvsearch-runs``: where Tune keeps each search's state."""
    return Path(os.environ.get("LVSEARCH_STORAGE") or Path.cwd() / STORAGE_DEFAULT).resolve()


@dataclass(frozen=True)
class SearchState:
    """Everything needed to find and continue a search (saved as JSON in its folder)."""

    name: str
    space_file: str
    space_text: str
    data_root: str
    cache_dir: str
    tracking_uri: str
    parent_run_id: str
    samples: int
    allow_missing: bool = False
    optuna_storage: str | None = None  # the Optuna RDB storage of the search's study (named as the search)

    def folder(self, storage: Path) -> Path:
        return storage / self.name

    def journal_dir(self, storage: Path) -> Path:
        return self.folder(storage) / FOLDER

    def save(self, storage: Path) -> None:
        self.folder(storage).mkdir(parents=True, exist_ok=True)
        (self.folder(storage) / STATE_FILE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, storage: Path, name: str) -> SearchState:
        path = storage / name / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no search {name!r} under {storage} (looked for {path})")
        return cls(**json.loads(path.read_text()))
