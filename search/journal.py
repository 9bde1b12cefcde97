"""Tracking that outlives a tracking server's outage: a journal of MLflow operations per writer.

Every trial (and the driver, for the search's own run) appends what it logs to a JSON-lines file
in the search's folder; the driver delivers the undelivered lines to MLflow in order, as the search
goes. A line that cannot be delivered now (server down, timeout) waits on disk, and delivery stops
there so that order is kept; the driver tries again a few seconds later, at the end of the search,
or ``lvsearch sync NAME`` sends it once the server answers. Upstream MLflow and Ray have no such
buffer (mlflow issues 4693, 14627). Trials only append: a worker never talks to the tracking store
(nor imports MLflow), so it needs no route or credentials to it.

Nothing is logged twice: lines are delivered at most once per journal position (the position is
saved after each line), and a line re-sent after a crash between send and save is identical
(metrics carry the timestamp of their first attempt, which MLflow's stores deduplicate; runs are
found again by their trial tag rather than created twice; tags and artifacts overwrite).

    <search folder>/journal/<writer>.jsonl         one operation per line, never rewritten
    <search folder>/journal/<writer>.sent          how many lines are delivered
    <search folder>/journal/<writer>-files/        copies of artifacts until they are delivered
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from lvseg.status import Status

FOLDER = "journal"
SEARCH = "_search"       # the writer (and run key) of the search's own parent run
RETRY_S = 10.0           # after a failed delivery, later log calls only append for this long
PERMANENT = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE",
             "RESOURCE_ALREADY_EXISTS", "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_REQUEST"}


def is_transient(error: BaseException) -> bool:
    """An error worth trying again later: anything but a request the store rejects on its merits."""
    return getattr(error, "error_code", None) not in PERMANENT


class Journal:
    """One writer's operations on the runs of one search. ``key`` names a run: a Tune trial id, or
    SEARCH for the parent run. Safe to share between processes (a file lock guards each call)."""

    def __init__(self, folder: Path, writer: str, uri: str, parent_run_id: str, search: str) -> None:
        self.folder, self.writer, self.uri = Path(folder), writer, uri
        self.parent_run_id, self.search = parent_run_id, search
        self.path = self.folder / f"{writer}.jsonl"
        self.lock = FileLock(str(self.folder / f"{writer}.lock"))
        self.runs: dict[str, str] = {SEARCH: parent_run_id}
        self.retry_after = 0.0
        self.last_error = ""

    # ---- what writers log ----------------------------------------------------------------

    def start_run(self, key: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        """The trial's child run: created on delivery, or found again (and set RUNNING) if it exists."""
        self._append({"op": "start", "key": key, "name": name, "params": {k: str(v) for k, v in params.items()},
                      "tags": dict(tags), "ts": _now_ms()})

    def metrics(self, key: str, metrics: Mapping[str, Any], step: int) -> None:
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        self._append({"op": "metrics", "key": key, "metrics": numbers, "step": step,
                      "ts": _now_ms()})

    def tags(self, key: str, tags: Mapping[str, str]) -> None:
        self._append({"op": "tags", "key": key, "tags": {k: str(v) for k, v in tags.items()}})

    def artifact(self, key: str, path: Path, folder: str | None = None) -> None:
        """Log a file; it is copied into the journal first, so the original may go away."""
        copy = self.folder / f"{self.writer}-files" / uuid.uuid4().hex / Path(path).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
        self._append({"op": "artifact", "key": key, "file": str(copy.relative_to(self.folder)), "folder": folder})

    def text(self, key: str, text: str, name: str) -> None:
        copy = self.folder / f"{self.writer}-files" / uuid.uuid4().hex / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text)
        self._append({"op": "artifact", "key": key, "file": str(copy.relative_to(self.folder)), "folder": None})

    def end(self, key: str, status: Status, name: str = "", params: Mapping[str, Any] | None = None) -> None:
        """Close the run with ``status``; ``name``/``params`` create it if its trial never did."""
        self._append({"op": "end", "key": key, "status": str(status), "name": name,
                      "params": {k: str(v) for k, v in (params or {}).items()}, "ts": _now_ms()})

    # ---- reading back ----------------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def sent(self) -> int:
        path = self.folder / f"{self.writer}.sent"
        return int(path.read_text() or 0) if path.is_file() else 0

    def pending(self) -> int:
        return len(self.entries()) - self.sent()

    def last_step(self, key: str) -> int:
        """The highest epoch this journal holds metrics of, delivered or not (0 if none)."""
        return max((e["step"] for e in self.entries() if e["op"] == "metrics" and e["key"] == key), default=0)

    # ---- delivery --------------------------------------------------------------------------

    def deliver(self, force: bool = False) -> int:
        """Send undelivered lines in order until one fails; returns how many still wait. Without
        ``force``, a recent failure makes this a no-op (log calls must not wait on a dead server)."""
        if not force and time.monotonic() < self.retry_after:
            return self.pending()
        from search import tracking  # only where delivering: trials that only append never import MLflow

        with self.lock, tracking.impatient():
            entries, sent = self.entries(), self.sent()
            for index in range(sent, len(entries)):
                try:
                    self._apply(entries[index])
                except Exception as error:
                    if is_transient(error):
                        self.retry_after = time.monotonic() + RETRY_S
                        self.last_error = tracking.first_line(error)
                        return len(entries) - index
                    self._reject(entries[index], error)
                self._save_sent(index + 1)
            self.last_error = ""
            return 0

    def deliver_within(self, seconds: float, pause: float = 2.0) -> int:
        """Keep delivering for up to ``seconds`` (the end of a search, ``lvsearch sync``)."""
        deadline = time.monotonic() + seconds
        left = self.deliver(force=True)
        while left and time.monotonic() < deadline:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            left = self.deliver(force=True)
        return left

    def _append(self, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.lock, self.path.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")

    def _save_sent(self, count: int) -> None:
        path = self.folder / f"{self.writer}.sent"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(str(count))
        os.replace(tmp, path)

    def _reject(self, entry: dict[str, Any], error: BaseException) -> None:
        """The store refused this line on its merits (it will never accept it): keep it on record."""
        from search import tracking

        with (self.folder / f"{self.writer}.rejected").open("a") as handle:
            handle.write(json.dumps({**entry, "error": tracking.first_line(error)}) + "\n")

    def _apply(self, entry: dict[str, Any]) -> None:
        from search import tracking

        mlflow = tracking.client(self.uri)
        op, key = entry["op"], entry["key"]
        if op == "start":
            self.runs[key] = tracking.start_trial_run(mlflow, self.uri, self.parent_run_id, self.search, key,
                                                      entry["name"], entry["params"], entry["tags"], entry.get("ts"))
            return
        run_id = self._run_id(mlflow, key, entry)
        if op == "metrics":
            tracking.log_metrics(mlflow, run_id, entry["metrics"], entry["step"], entry["ts"])
        elif op == "tags":
            tracking.set_tags(mlflow, run_id, entry["tags"])
        elif op == "artifact":
            file = self.folder / entry["file"]
            if file.is_file():  # copies go only once delivered: a missing one was sent before a crash
                mlflow.log_artifact(run_id, str(file), entry["folder"])
                shutil.rmtree(file.parent, ignore_errors=True)
        elif op == "end":
            tracking.finish_run(mlflow, run_id, Status.parse(entry["status"]), entry.get("ts"))
        else:
            raise ValueError(f"{self.path}: unknown journal operation {op!r}")

    def _run_id(self, mlflow: Any, key: str, entry: dict[str, Any]) -> str:
        from search import tracking

        if key not in self.runs:
            found = tracking.find_trial_run(mlflow, self.uri, self.parent_run_id, key)
            if found is None:  # a trial that died before its run was created: the driver makes one
                found = tracking.start_trial_run(mlflow, self.uri, self.parent_run_id, self.search, key,
                                                 entry.get("name") or f"{self.search}-{key}",
                                                 entry.get("params", {}), {})
            self.runs[key] = found
        return self.runs[key]


def _now_ms() -> int:
    """Entries carry the time they happened: a run's times in MLflow are its trial's, however late
    they are delivered (the delivery thread's second, a tracking outage)."""
    return int(time.time() * 1000)


def journals(folder: Path, uri: str, parent_run_id: str, search: str) -> list[Journal]:
    """Every writer's journal of a search, the search's own last (it closes the parent run)."""
    names = sorted(p.stem for p in Path(folder).glob("*.jsonl"))
    names = [n for n in names if n != SEARCH] + ([SEARCH] if SEARCH in names else [])
    return [Journal(folder, name, uri, parent_run_id, search) for name in names]
