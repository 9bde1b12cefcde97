"""A local Ray for the search tests: started once, on loopback, in the tests' own temp folder."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def short_tmp() -> Iterator[Callable[[str], Path]]:
    """``short_tmp(prefix)``: a new folder directly under /tmp, removed when the session ends. Ray's
    temp folders go there: its socket paths must stay under 108 bytes, which pytest's tmp paths
    (longer under xdist) break."""
    made: list[Path] = []

    def make(prefix: str) -> Path:
        made.append(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")))
        return made[-1]

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()``: a loopback port nothing listens on now, for a server the test starts."""
    return _free_port


def _lines_until(process: subprocess.Popen, text: str) -> list[str]:
    """What ``process`` printed, up to the first line containing ``text``."""
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never printed: {lines}")


@pytest.fixture(scope="session")
def lines_until() -> Callable[[subprocess.Popen, str], list[str]]:
    """``lines_until(process, text)``: what the process printed up to the first line with ``text``
    (an AssertionError naming them if its output ends first)."""
    return _lines_until


def listening_sockets() -> set[str]:
    """Local addresses of listening TCP sockets with their process (``ss -ltnpH``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return {" ".join(line.split()[3:]) for line in out.splitlines() if line.strip()}


def _ours(sockets: set[str]) -> set[str]:
    """The sockets held by this process or its descendants: other test workers run their own Ray."""
    import psutil

    me = psutil.Process()
    pids = {str(p.pid) for p in [me, *me.children(recursive=True)]}
    return {s for s in sockets if set(re.findall(r"pid=(\d+)", s)) & pids}


@pytest.fixture(scope="session")
def ray_local(short_tmp: Callable[[str], Path]):
    """Start Ray the way `lvsearch` does locally; yields the listening sockets Ray opened."""
    import ray

    from search.prepare import init_ray

    if ray.is_initialized():
        ray.shutdown()
    before = listening_sockets()
    init_ray(None, temp_dir=str(short_tmp("lvs-ray-")))
    opened = _ours(listening_sockets() - before)
    yield opened
    ray.shutdown()


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory):
    """``browse(url, png=None, dump=False, size=(1200, 2400))``: headless Chromium (Debian's package,
    which CI installs) shooting a page to ``png`` or returning its DOM after the page's scripts ran."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("BROWSER TESTS SKIPPED: Debian's chromium is not installed (`apt-get install chromium`; "
                    ".ci/run installs it)")
    profile = tmp_path_factory.mktemp("chromium-profile")

    def browse(url: str, png=None, dump: bool = False, size: tuple[int, int] = (1200, 2400),
               wait_ms: int = 8000) -> str:
        command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                   f"--virtual-time-budget={wait_ms}"]
        command += ["--dump-dom"] if dump else [f"--screenshot={png}"]
        done = subprocess.run([*command, url], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    return browse


def _not_blank(png) -> bool:
    import cv2

    pixels = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE).astype(float)
    return pixels.std() > 10 and (pixels < 200).mean() > 0.01


@pytest.fixture(scope="session")
def not_blank():
    """``not_blank(png)``: a screenshot that shows something, more than one colour over a good part."""
    return _not_blank
