"""``lvsearch``: placeholder until the search orchestration lands (issue: search orchestration)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("lvsearch: search orchestration is not built yet; `lvseg --help` lists the data commands.",
          file=sys.stderr)
    return 2
