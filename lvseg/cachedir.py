"""Build-once cache folders: complete or absent, never half written, built by one process.

Every expensive artefact (frame store, frozen-feature cache, SAM embeddings) is a folder whose
``info.json`` is written last. Builders work in a temporary sibling folder under a file lock and
rename it into place, so readers never see a partial folder, and concurrent trials on one node
compute it once: the others wait on the lock and then find it done.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

INFO = "info.json"


def is_built(path: Path) -> bool:
    return (path / INFO).is_file()


def build_once(path: Path, build: Callable[[Path], None]) -> bool:
    """Run ``build(tmp)`` unless ``path`` is already built; ``build`` must write ``tmp/info.json``
    last. Returns True when this call built it."""
    if is_built(path):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if is_built(path):
            return False
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            build(tmp)
            if not is_built(tmp):
                raise RuntimeError(f"builder of {path.name} wrote no {INFO}")
            shutil.rmtree(path, ignore_errors=True)  # a folder left without info.json is debris
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True
