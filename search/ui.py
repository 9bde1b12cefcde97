"""``lvsearch ui``: MLflow's UI over a local tracking store, run as a child that this command watches.

``mlflow ui`` took 13-17 s to answer on 2 cores with its default four workers (one: 8.5-10 s), and
its address was printed long before it did; its console carried uvicorn's access log, and a
Ctrl-C printed ~40 lines of shutdown (with one worker, a traceback: the terminal's SIGINT and
MLflow's forwarded copy both reached uvicorn). So the server runs in its own session with one
worker and uvicorn's warnings only; this command says when it answers, and on Ctrl-C or SIGTERM
hands it one SIGINT, which MLflow forwards once, and says that it stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

STOP_S = 30  # a server that has not ended this long after its SIGINT is killed
POLL_S = 0.2
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# MLflow's job runner (a pool of huey consumers) serves GenAI features this store does not use and
# made the UI take ~30 s to start instead of ~10 s
NO_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
# MLflow's own import of a deprecated Starlette module: nothing a user can act on
QUIET = "ignore:starlette.middleware.wsgi is deprecated"


class PortInUse(OSError):
    """The UI's port is taken: nothing was started."""


def serve(uri: str, host: str, port: int, workers: int) -> int:
    """Serve ``uri`` until the server ends (its exit code) or Ctrl-C/SIGTERM stops it (0). The
    caller has checked the port (:func:`check_port_free`) before it printed the addresses."""
    # the registry store named (the same store, as MLflow would pick) so that MLflow does not say so
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--registry-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", str(workers), "--uvicorn-opts", "--log-level warning"]
    started = time.monotonic()
    server = subprocess.Popen(command, env=server_env(os.environ), start_new_session=True,
                              preexec_fn=_stopped_with(os.getpid()))
    try:
        if _wait_until_up(server, _health_url(host, port)):
            print(f"the UI answers (after {time.monotonic() - started:.1f} s): open the addresses above", flush=True)
        code = server.wait()
        how = f"exit {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
        print(f"lvsearch ui: the MLflow server ended by itself ({how}); its output is above", file=sys.stderr)
        return code if code >= 0 else 128 - code  # as a shell reports a killed process: 137 for SIGKILL
    except KeyboardInterrupt:
        _stop(server)
        print("lvsearch ui: stopped", file=sys.stderr)
        return 0
    finally:
        _kill_session(server)  # whatever ended this command, no part of the server outlives it


def server_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The server's environment: ``environ`` with MLflow's job runner off and one warning of
    MLflow's silenced; the user's own warning filters still hold for every other warning (ours
    comes last, so it wins for its one message only: a user's ``error`` must not stop the UI)."""
    own = environ.get("PYTHONWARNINGS", "")
    return {**environ, **NO_JOBS, "PYTHONWARNINGS": f"{own},{QUIET}" if own else QUIET}


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUse` if ``host:port`` cannot be bound: a server already there would
    answer for the one this command starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as the server binds: connections of a UI stopped a moment ago (TIME_WAIT) do not count,
        # a socket listening there does
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortInUse(f"cannot serve on {host}:{port} ({error.strerror}): pick another --port") from None


def _health_url(host: str, port: int) -> str:
    """Where to ask whether the server answers: a wildcard address answers on loopback."""
    local = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{local}]' if ':' in local else local}:{port}/health"


def _wait_until_up(server: subprocess.Popen, url: str) -> bool:
    """True once ``url`` answers, whatever its status (MLflow refuses a host name it does not
    allow, yet it is up); False if the server ended first. Asked directly: an http_proxy in the
    environment would otherwise be asked for a loopback address."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while server.poll() is None:
        try:
            with direct.open(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(POLL_S)
    return False


def _stopped_with(parent: int) -> Callable[[], None] | None:
    """What the server's process runs before MLflow starts: on Linux, ask the kernel to send it
    SIGINT, as Ctrl-C would (MLflow forwards it to uvicorn, which stops), when ``parent`` ends in
    any way, SIGKILL included; the server would otherwise hold the port with no one to stop it."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it

    def stop_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGINT)
        if os.getppid() != parent:  # the parent ended before the request was in place: no server
            os._exit(1)

    return stop_with_parent


def _stop(server: subprocess.Popen) -> None:
    """One SIGINT, as a terminal's Ctrl-C would send it to the server alone; a server still there
    after :data:`STOP_S`, or a second Ctrl-C meanwhile, gets SIGKILL, its whole session with it."""
    try:
        server.send_signal(signal.SIGINT)
        server.wait(STOP_S)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        _kill_session(server)
        server.wait()


def _kill_session(server: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # every process of it has ended
        os.killpg(server.pid, signal.SIGKILL)
