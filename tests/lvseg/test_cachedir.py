from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lvseg.cachedir import INFO, build_once, is_built, problem

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


def _build_data(tmp: Path, payload: bytes = b"x" * 300_000) -> None:
    (tmp / "values.bin").write_bytes(payload)
    (tmp / INFO).write_text("{}")


def test_a_truncated_file_is_named_and_the_folder_rebuilt(tmp_path: Path, caplog) -> None:
    path = tmp_path / "thing"
    assert build_once(path, _build_data)
    assert problem(path) is None and json.loads((path / INFO).read_text())["files"]["values.bin"]["size"] == 300_000
    with (path / "values.bin").open("r+b") as handle:
        handle.truncate(1000)
    assert problem(path) == f"{path / 'values.bin'} has 1000 bytes, 300000 were written"
    with caplog.at_level(logging.WARNING, logger="lvseg.cachedir"):
        assert build_once(path, _build_data)  # rebuilt
    assert f"{path / 'values.bin'} has 1000 bytes" in caplog.text and "rebuilding" in caplog.text
    assert (path / "values.bin").stat().st_size == 300_000 and problem(path) is None


def test_an_overwritten_block_is_seen_by_the_sampled_checksum(tmp_path: Path) -> None:
    path = tmp_path / "thing"
    build_once(path, _build_data)
    with (path / "values.bin").open("r+b") as handle:
        handle.seek(300_000 - 10)
        handle.write(b"corrupted!")
    assert "sampled checksum differs" in problem(path)


KILLED_BUILDER = """
import sys, time
from pathlib import Path
from lvseg.cachedir import INFO, build_once

def build(tmp):
    (tmp / "values.bin").write_bytes(b"half")
    print("building", flush=True)
    time.sleep(60)

build_once(Path(sys.argv[1]), build)
"""


def test_a_builder_killed_midway_leaves_nothing_anyone_uses(tmp_path: Path) -> None:
    path = tmp_path / "thing"
    builder = subprocess.Popen([sys.executable, "-c", KILLED_BUILDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert builder.stdout.readline().strip() == "building"
    builder.send_signal(signal.SIGKILL)
    builder.wait(30)
    assert not is_built(path) and list(tmp_path.glob(".thing.tmp-*"))  # only its temporary folder
    assert build_once(path, _build_data)
    assert (path / "values.bin").stat().st_size == 300_000 and not list(tmp_path.glob(".thing.tmp-*"))
