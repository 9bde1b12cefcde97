"""Ctrl-C and SIGTERM end a search the way Tune ends one on Ctrl-C: the trials stop, Tune saves
the experiment's state, and the driver ends every run it started and says how to resume.

Tune stops gracefully on SIGINT and SIGUSR1 but not on SIGTERM (which Ray's driver turns into an
abrupt exit). :class:`Interrupts` handles both signals itself: inside ``Tuner.fit`` it hands the
first one to Tune's handler; anywhere else, or the second time, it raises :class:`Interrupted`
so that ``finally`` blocks and the search's own ending run.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised by a handled signal; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Interrupts:
    """Install with ``install()`` (again after ``ray.init``, which sets its own SIGTERM handler);
    ``signum`` is the first signal received, or None."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.saved: dict[int, Any] = {}

    def install(self) -> None:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours forwards to Tune's SIGUSR1 handler
        for signum in HANDLED:
            self.saved.setdefault(signum, signal.getsignal(signum))
            signal.signal(signum, self.handle)

    def restore(self) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        self.saved.clear()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        tune_handler = signal.getsignal(signal.SIGUSR1)  # set by Tune only while a Tuner runs
        if first and callable(tune_handler):
            tune_handler(signum, frame)
            return
        raise Interrupted(self.signum)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as shells report it."""
        return 128 + int(self.signum or signal.SIGINT)
