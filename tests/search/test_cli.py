from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from search import tracking
from search.cli import main


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ui_serves_the_store_on_loopback_only(tmp_path: Path) -> None:
    port = _free_port()
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracking.experiment_id(tracking.client(uri), uri)  # a store where a search ran
    server = subprocess.Popen([str(Path(sys.executable).parent / "lvsearch"), "ui", "--port", str(port),
                               "--tracking-uri", uri], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status == 200
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("the MLflow UI did not answer on 127.0.0.1")
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        addresses = {line.split()[3] for line in listening.splitlines() if line.strip()}
        assert addresses == {f"127.0.0.1:{port}"}, addresses
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert f"http://127.0.0.1:{port}/#/experiments/" in output


def test_a_bad_space_is_one_error_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "bad.yaml"
    space.write_text("recipe: baseline\nparams:\n  lr: {type: loguniform, low: 0, high: 1}\n")
    assert main(["run", str(space), "--data", str(tmp_path)]) == 2
    assert "bad.yaml: params.lr.low: a log scale needs low > 0" in capsys.readouterr().err


def test_resume_of_an_unknown_search_says_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resume", "nothing", "--storage", str(tmp_path)]) == 2
    assert f"no search 'nothing' under {tmp_path}" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["list"], ["export", "s", "--out", "x.yaml"], ["ui"]])
def test_read_only_commands_create_no_store(command: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path / 'sub' / 'mlruns.db'}"
    assert main([*command, "--tracking-uri", uri]) == 2
    assert f"no tracking store at {uri}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the database nor its folder
