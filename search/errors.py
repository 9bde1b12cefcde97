"""Errors that decide ``lvsearch``'s exit code, in a module that imports nothing: the CLI needs
them for every command, and ``lvsearch list`` should not load torch and Ray Tune to know them."""

from __future__ import annotations


class NotStarted(Exception):
    """An unexpected error before the search started (its cause has the traceback)."""


class RayStartError(OSError):
    """A local Ray that did not start (an unwritable temp folder, a port taken, a process that
    died): nothing of the search was started. An OSError, so its exit code is the one for a search
    that could not start, and its message says that it was Ray's start that failed."""
