"""Errors that decide ``lvsearch``'s exit code, in a module that imports nothing: the CLI needs
them for every command, and ``lvsearch list`` should not load torch and Ray Tune to know them."""

from __future__ import annotations


class NotStarted(Exception):
    """An unexpected error before the search started (its cause has the traceback)."""
