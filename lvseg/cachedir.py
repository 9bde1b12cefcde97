"""Build-once cache folders: complete or absent, never half written, built by one process, and
checked every time they are opened.

Every expensive artefact (frame store, frozen-feature cache, SAM embeddings) is a folder whose
``info.json`` is written last. Builders work in a temporary sibling folder under a file lock and
rename it into place, so readers never see a partial folder (a builder killed midway leaves only
its temporary folder, which the next builder removes), and concurrent trials on one node compute
it once: the others wait on the lock and then find it done.

``info.json`` also records each data file's size and a checksum of a few sampled blocks. Opening
a folder checks them: a truncated or overwritten file (a full disk, a copy cut short) would
otherwise surface as numpy's "mmap length is greater than file size", naming no file, or as
silently wrong numbers. A folder that fails the check is rebuilt under the lock, with a warning
naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

INFO = "info.json"
SAMPLES = 8            # blocks per file whose checksum info.json keeps
BLOCK = 1 << 16        # bytes per sampled block
log = logging.getLogger(__name__)


def is_built(path: Path) -> bool:
    return (path / INFO).is_file()


def fingerprint(file: Path) -> dict[str, int | str]:
    """Size and SHA-256 of SAMPLES evenly spaced blocks: cheap to check on every open, and sure
    to see a truncation (the size) and likely to see an overwrite."""
    size = file.stat().st_size
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for i in range(SAMPLES):
            handle.seek(max(0, size - BLOCK) * i // max(1, SAMPLES - 1))
            digest.update(handle.read(BLOCK))
    return {"size": size, "sample_sha256": digest.hexdigest()}


def _record_files(folder: Path) -> None:
    info = json.loads((folder / INFO).read_text())
    info["files"] = {p.name: fingerprint(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != INFO}
    (folder / INFO).write_text(json.dumps(info, indent=1))


def problem(path: Path) -> str | None:
    """Why the built folder ``path`` cannot be trusted (naming the file), or None if it checks out.
    Folders built before checksums were recorded are trusted."""
    files = json.loads((path / INFO).read_text()).get("files", {})
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            return f"{file} is missing"
        size = file.stat().st_size
        if size != expected["size"]:
            return f"{file} has {size} bytes, {expected['size']} were written"
        if fingerprint(file)["sample_sha256"] != expected["sample_sha256"]:
            return f"{file} changed since it was written (sampled checksum differs)"
    return None


def build_once(path: Path, build: Callable[[Path], None]) -> bool:
    """Run ``build(tmp)`` unless ``path`` is already built and intact; ``build`` must write
    ``tmp/info.json`` last. Returns True when this call built it."""
    if is_built(path) and problem(path) is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if is_built(path):
            why = problem(path)
            if why is None:
                return False
            log.warning("%s; rebuilding %s", why, path)
        for debris in path.parent.glob(f".{path.name}.tmp-*"):  # builders killed midway
            shutil.rmtree(debris, ignore_errors=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.mkdir()
        try:
            build(tmp)
            if not is_built(tmp):
                raise RuntimeError(f"builder of {path.name} wrote no {INFO}")
            _record_files(tmp)
            shutil.rmtree(path, ignore_errors=True)  # a folder without info.json, or a corrupt one
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True
