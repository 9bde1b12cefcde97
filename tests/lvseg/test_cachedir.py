from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lvseg.cachedir import INFO, build_once, is_built

SLOW_BUILDER = """
import sys, time
from pathlib import Path
from lvseg.cachedir import INFO, build_once

path, log = Path(sys.argv[1]), Path(sys.argv[2])

def build(tmp):
    with log.open("a") as handle:
        handle.write("built\\n")
    time.sleep(0.5)
    (tmp / INFO).write_text("{}")

build_once(path, build)
"""


def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    path, log = tmp_path / "thing", tmp_path / "log"
    workers = [subprocess.Popen([sys.executable, "-c", SLOW_BUILDER, str(path), str(log)]) for _ in range(3)]
    assert [worker.wait(60) for worker in workers] == [0, 0, 0]
    assert log.read_text() == "built\n" and is_built(path)


def test_failed_build_leaves_nothing_and_a_retry_builds(tmp_path: Path) -> None:
    def broken(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        build_once(tmp_path / "thing", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing.lock"]
    assert build_once(tmp_path / "thing", lambda tmp: (tmp / INFO).write_text("{}"))
    assert not build_once(tmp_path / "thing", lambda tmp: None)


def test_a_builder_that_forgets_info_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="wrote no info.json"):
        build_once(tmp_path / "thing", lambda tmp: None)
    assert not (tmp_path / "thing").exists()
