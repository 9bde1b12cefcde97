from __future__ import annotations

import socket
from pathlib import Path

import pytest

from search import tracking
from search.cli import main
from search.ui import _health_url


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
