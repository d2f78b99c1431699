"""Two starts in the same instant: a port taken by another program between choice and bind.

Notebooks run two at a time (and a presenter may run `make server` meanwhile), so another
program can take the port a setup chose before its server binds it. Its answer must not count
as our server being ready: the start tries again on another port.
"""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mlflow_series import config, servers
from mlflow_series.servers import core, local, process

import pytest
import requests
from test_servers import cleanup_workspace, fresh_ports


class AlwaysOk(BaseHTTPRequestHandler):
    """Another program on the port: it answers 200 to anything."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not mlflow")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def squatter():
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlwaysOk)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_listener_of_another_process_is_not_ours(squatter):
    assert process.listener_is_ours(os.getpid(), squatter) is True  # this test's own thread
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert process.listener_is_ours(other.pid, squatter) is False
    finally:
        other.kill()
        other.wait()


@pytest.mark.slow
def test_a_port_taken_in_the_same_instant_is_not_taken_for_our_server(
    tmp_path, monkeypatch, squatter
):
    for key, port in fresh_ports().items():
        monkeypatch.setitem(servers.PORTS, key, port)
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    chosen = iter([squatter])  # the first choice loses the race; later ones are free

    def racing_pick_port(preferred: int, taken: set[int] = frozenset()) -> int:
        return next(chosen, None) or process.pick_port(preferred, taken)

    monkeypatch.setattr(local, "pick_port", racing_pick_port)
    try:
        with servers.start_local(tmp_path) as stack:
            assert stack.ports["mlflow"] != squatter
            reply = requests.get(stack.tracking_uri + core.API_PROBE, timeout=10)
            assert "experiments" in reply.json()  # MLflow's answer, not the other program's
    finally:
        cleanup_workspace(tmp_path)
