"""Look-ups in the ``name -> builder`` dicts every family keeps (losses, optimisers, schedules,
heads, models, SAM models, prompt strategies): one error message for an unknown name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, family: str) -> T:
    """``registry[name]``, or ValueError naming the family, the name and every known one."""
    if name not in registry:
        raise ValueError(f"unknown {family} {name!r}; known: {', '.join(registry)}")
    return registry[name]
