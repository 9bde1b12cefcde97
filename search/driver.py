"""What the command running a search lends it: signal handling, where the libraries' logs go, and
how much the console shows.

The libraries' own log lines (Ray, Tune, Optuna, MLflow, Python warnings) go to the search's log
file, ``<storage>/<name>/lvsearch.log``, whose path is printed; ``--verbose`` sends them to the
console as well. Trial workers' output stays in Ray's session logs (the log file says where), so
Ray's shutdown of its workers prints nothing on the console.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from search.interrupts import Interrupts

LIBRARIES = ("ray", "optuna", "mlflow", "alembic", "py.warnings", "filelock", "urllib3")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DETAILS = ("quiet", "normal", "verbose")
LAST_RESORT = logging.lastResort


class LibraryLogs:
    """Routes the libraries' loggers away from the console: into memory until the search has a
    folder, then into its log file. Install before Ray starts (it logs while starting)."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.buffer = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
        self.buffer.setFormatter(logging.Formatter(FORMAT))
        self.file: logging.Handler | None = None
        self.path: Path | None = None

    def install(self) -> None:
        """Route now, before Ray starts (it logs while starting); the libraries are imported first
        because importing Ray gives its logger a console handler."""
        import optuna
        import ray  # noqa: F401

        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's boxes and TensorBoard hint: not for this console
        # MLflow is imported later (a bad space need not wait for it), and its import gave its
        # logger a console handler again: "Creating initial MLflow database tables..." on screen.
        os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
        logging.captureWarnings(True)  # Optuna's ExperimentalWarning and friends become log lines
        optuna.logging.disable_default_handler()  # its own stderr handler
        self.route()

    def route(self) -> None:
        """(Re)point every library logger at the buffer or the file, and the console if verbose.
        ``ray.init`` clears the "ray" logger's handlers while it starts: what finds no handler at
        all goes to Python's last-resort handler, which is pointed here too."""
        target = self.file or self.buffer
        console = [logging.StreamHandler(sys.stderr)] if self.verbose else []
        for name in LIBRARIES:
            library = logging.getLogger(name)
            library.handlers = [target, *console]
            library.propagate = False
            library.setLevel(logging.INFO if name in ("ray", "optuna", "mlflow") else logging.WARNING)
        logging.lastResort = target
        ours = logging.getLogger("lvseg")  # our own warnings (a cache rebuilt, BatchNorm) stay on the console
        if not ours.handlers:
            ours.addHandler(logging.StreamHandler(sys.stderr))

    def to_file(self, path: Path, ray_logs: str | None) -> None:
        """From now on into ``path`` (what was buffered first)."""
        self.path = path
        self.file = logging.FileHandler(path)
        self.file.setFormatter(logging.Formatter(FORMAT))
        self.buffer.setTarget(self.file)
        self.buffer.flush()
        self.route()
        if ray_logs:
            logging.getLogger("ray").info("trial workers' own output: %s", ray_logs)

    def close(self) -> None:
        for name in LIBRARIES:
            logging.getLogger(name).handlers = []
        logging.lastResort = LAST_RESORT
        if self.file is not None:
            self.file.close()


@dataclass
class Driver:
    """``interrupts``: Ctrl-C and SIGTERM handling; ``logs``: where the libraries' logs go (None:
    left as they are); ``detail``: quiet (status lines only), normal (a line per ended trial too)
    or verbose (every trial event, and the libraries' logs on the console as well)."""

    interrupts: Interrupts = field(default_factory=Interrupts)
    logs: LibraryLogs | None = None
    detail: str = "normal"

    @classmethod
    def for_command(cls, detail: str) -> Driver:
        logs = LibraryLogs(verbose=detail == "verbose")
        logs.install()
        return cls(Interrupts(), logs, detail)
