from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from search import tracking
from search.cli import main
from search.ui import QUIET, _health_url, _wait_until_up, check_port_free, server_env


def test_a_taken_port_is_one_error_before_any_address_is_printed(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A server already on the port would answer for the one `lvsearch ui` starts."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracking.open_store(uri, create=True)
    capsys.readouterr()  # MLflow's own lines as it created the store
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port), "--tracking-uri", uri]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == (f"lvsearch ui: error: cannot serve on 127.0.0.1:{port} (Address already in use): "
                           "pick another --port")


@pytest.mark.parametrize("host, url", [("127.0.0.1", "http://127.0.0.1:5000/health"),
                                       ("0.0.0.0", "http://127.0.0.1:5000/health"),
                                       ("::", "http://[::1]:5000/health"),
                                       ("myhost", "http://myhost:5000/health")])
def test_readiness_is_asked_where_the_server_answers(host: str, url: str) -> None:
    assert _health_url(host, 5000) == url


class _Refusing(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(403, "host not allowed")

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_that_refuses_the_host_still_answers_and_no_proxy_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow answers 403 to a host name it does not allow: it is up all the same. A proxy in the
    environment (here one that does not exist) is not asked for a loopback address."""
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stand_in = subprocess.Popen(["sleep", "60"])  # the server's process: alive throughout
    try:
        assert _wait_until_up(stand_in, _health_url("127.0.0.1", httpd.server_address[1]))
    finally:
        stand_in.kill()
        httpd.shutdown()
    stand_in.wait()
    assert not _wait_until_up(stand_in, _health_url("127.0.0.1", httpd.server_address[1]))  # it ended: False


def test_a_port_whose_last_server_just_stopped_is_free() -> None:
    """A UI stopped a moment ago leaves connections it closed first in TIME_WAIT on its port: a
    new `lvsearch ui` there must start, as the server itself (SO_REUSEADDR) would."""
    with socket.socket() as listening:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listening.accept()
            accepted.close()  # the server's side closes first: its end of the pair waits in TIME_WAIT
            client.recv(1)
    check_port_free("127.0.0.1", port)


@pytest.fixture
def running_ui(tmp_path: Path, free_port, lines_until):
    """`lvsearch ui` started on a new store and answering: (its process, its port, its server's pid).
    Stopped afterwards with SIGTERM, on which it stops its server too, if a test left it running."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracking.open_store(uri, create=True)
    port = free_port()
    ui = subprocess.Popen([str(Path(sys.executable).parent / "lvsearch"), "ui", "--port", str(port), "--tracking-uri",
                           uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines_until(ui, "the UI answers")
        (server,) = subprocess.run(["pgrep", "-P", str(ui.pid)], capture_output=True, text=True).stdout.split()
        yield ui, port, int(server)
    finally:
        if ui.poll() is None:
            ui.terminate()
            ui.wait(60)


def test_a_server_killed_under_the_ui_is_said_with_its_signal(running_ui) -> None:
    """The server's process killed (the OOM killer, a stray kill -9): one line naming the signal,
    exit 137 as a shell reports it (it was -9, so 247), and nothing of the server left."""
    ui, port, server = running_ui
    os.kill(server, signal.SIGKILL)
    _, err = ui.communicate(timeout=60)
    assert ui.returncode == 137
    assert err.strip().splitlines()[-1] == ("lvsearch ui: the MLflow server ended by itself (killed by SIGKILL); "
                                            "its output is above")
    assert not _listening(port)


def test_the_server_stops_when_the_ui_command_is_killed(running_ui) -> None:
    """`lvsearch ui` itself killed (kill -9, a closed terminal's session torn down): its server,
    in a session of its own, must not hold the port with no one left to stop it."""
    ui, port, server = running_ui
    ui.kill()
    ui.wait(60)
    for _ in range(150):  # the server is stopped as by Ctrl-C: ~1 s
        if not _listening(port) and not _alive(server):
            break
        time.sleep(0.2)
    assert not _listening(port), f"a server still listens on {port} after lvsearch ui was killed"
    assert not _alive(server)


@pytest.mark.parametrize("option, line", [(["--workers", "0"], "--workers must be >= 1, got 0"),
                                          (["--port", "70000"], "--port must be 1-65535, got 70000")])
def test_impossible_ui_options_are_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str],
                                             line: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracking.open_store(uri, create=True)
    capsys.readouterr()
    assert main(["ui", "--tracking-uri", uri, *option]) == 2
    assert capsys.readouterr().err.strip() == f"lvsearch ui: error: {line}"


def test_the_server_keeps_the_user_s_warning_filters_but_one() -> None:
    """A user's PYTHONWARNINGS still holds in the server, except for the one message of MLflow's
    this command silences (a user's `error` would otherwise turn it into a server that fails)."""
    warn = ("import warnings\n"
            "warnings.warn('starlette.middleware.wsgi is deprecated, use a2wsgi', DeprecationWarning)\n"
            "warnings.warn('another deprecation', DeprecationWarning)\n")
    done = subprocess.run([sys.executable, "-c", warn], env=server_env({**os.environ, "PYTHONWARNINGS": "error"}),
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "DeprecationWarning: another deprecation"
    assert server_env({})["PYTHONWARNINGS"] == QUIET
    assert server_env({})["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def _listening(port: int) -> bool:
    return bool(subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout.strip())


def _alive(pid: int) -> bool:
    """Whether ``pid`` is still a running process (a zombie waiting for its reaper is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

