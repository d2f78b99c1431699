"""Two real MLflow servers, started outside the series' helpers, for `make test-external`.

A team runs `mlflow server` itself; the notebooks only get its URL. So this session starts two
servers the plain way, as subprocesses of pytest (of the xdist controller when run with `-n`,
shared by the workers, like a team server shared by its users):

- ``plain``: ``python -m mlflow server --backend-store-uri sqlite:///... --artifacts-destination
  ... --workers 1 --port <free port>``;
- ``basic-auth``: the same with ``--app-name basic-auth``, MLFLOW_FLASK_SERVER_SECRET_KEY, a
  generated MLFLOW_AUTH_ADMIN_PASSWORD (clients log in as ``admin``) and the auth settings of
  notebook 06 (MLFLOW_AUTH_CONFIG_PATH), which cache a checked login for 60 s.

Both start at once, with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (see _launch_server).

They are stopped at the end of the session, even when a test fails, and the session fails if any
process it started (servers, kernels, model servers, watchdogs) is still running then.

`make test` and `make test-unit` run pytest on tests/, which holds this folder; without
MLFLOW_SERIES_EXTERNAL in the environment (the make target sets it) nothing here is collected and
no server starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

ENABLED = bool(os.environ.get("MLFLOW_SERIES_EXTERNAL"))
collect_ignore_glob = [] if ENABLED else ["test_*.py"]

#: Where the controller tells the workers about the servers (xdist workers inherit os.environ).
SERVERS_VAR = "MLFLOW_SERIES_EXTERNAL_SERVERS"
#: Carried by every process this session starts, so that a leftover one can be found.
MARK_VAR = "MLFLOW_SERIES_EXTERNAL_MARK"
READY_TIMEOUT = 90.0
GRACE = 15.0
ADMIN = "admin"
KINDS = ("plain", "basic-auth")

_started: list[subprocess.Popen] = []
_folder: Path | None = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: The auth app's settings, as notebook 06 writes them: with the cache, a login's slow password
#: hash is checked once a minute instead of on every request (which made 02 take minutes).
AUTH_INI = """[mlflow]
default_permission = READ
database_uri = sqlite:///basic_auth.db
admin_username = admin
auth_cache_ttl_seconds = 60
"""


def _launch_server(folder: Path, auth: bool) -> dict[str, Any]:
    """Start `mlflow server` as a team would, with no helper of the series (not waiting)."""
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "AWS_"))}
    env.pop("MLFLOW_SERIES_TRACKING_URI", None)
    # No background job runner (it serves GenAI features): 2 processes instead of 15, ready in a
    # third of the time. Every notebook feature works without it.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    cmd = [sys.executable, "-m", "mlflow", "server"]
    cmd += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(folder / "artifacts"), "--workers", "1"]
    port = _free_port()
    cmd += ["--port", str(port)]
    info: dict[str, Any] = {"url": f"http://127.0.0.1:{port}", "log": str(folder / "server.log")}
    if auth:
        password = secrets.token_urlsafe(18)  # MLflow wants 12+ characters
        (folder / "basic_auth.ini").write_text(AUTH_INI)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(folder / "basic_auth.ini")
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(32)
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = password
        cmd += ["--app-name", "basic-auth"]
        info |= {"username": ADMIN, "password": password}
    with open(info["log"], "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=folder,  # basic_auth.db lands here
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    _started.append(proc)
    info["pid"] = proc.pid
    return info


def _wait_ready(info: dict[str, Any], proc: subprocess.Popen) -> None:
    """Wait until the server's /health answers 200; raise with its log if it exits or stalls."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{info['url']}/health", timeout=2).status_code == 200:
                return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    tail = Path(info["log"]).read_text(errors="replace")[-3000:]
    raise RuntimeError(f"mlflow server at {info['url']} did not start:\n{tail}")


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after GRACE seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=GRACE)
        if not _group_alive(proc.pid):
            return


def _group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def marked(var: str, value: str, exclude: set[int]) -> list[psutil.Process]:
    """Live processes whose environment has var=value, except those in `exclude`."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in exclude:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(var) == value and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def leftovers(var: str, value: str, exclude: set[int], grace: float = GRACE) -> list[str]:
    """The processes marked var=value still alive after `grace` seconds, killed; one line each."""
    deadline = time.monotonic() + grace
    while (procs := marked(var, value, exclude)) and time.monotonic() < deadline:
        time.sleep(0.3)
    lines = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            lines.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
            proc.kill()
    return lines


def pytest_configure(config: pytest.Config) -> None:
    """In the controller (or a run without xdist): start both servers before any worker."""
    global _folder
    if not ENABLED or hasattr(config, "workerinput") or SERVERS_VAR in os.environ:
        return
    os.environ[MARK_VAR] = secrets.token_hex(8)
    _folder = Path(tempfile.mkdtemp(prefix="mlflow-series-external-"))
    try:
        found = {kind: _launch_server(_folder / kind, kind != "plain") for kind in KINDS}
        for info, proc in zip(found.values(), _started, strict=True):  # both start at once
            _wait_ready(info, proc)
    except BaseException:
        _shutdown()
        raise
    os.environ[SERVERS_VAR] = json.dumps(found)


def _shutdown() -> list[str]:
    """Stop the servers, delete their folder; returns the processes that had to be killed."""
    for proc in _started:
        _stop_group(proc)
    mark = os.environ.get(MARK_VAR)
    left = leftovers(MARK_VAR, mark, _own_processes()) if mark else []
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)
    return left


def _own_processes() -> set[int]:
    """This process and its direct children (the xdist workers, which are shutting down)."""
    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children())}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the servers even after failures; fail the session if anything was left running."""
    if not _started:
        return
    left = _shutdown()
    _started.clear()
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        listing = "\n  ".join(left)
        print(f"\nProcesses left running after the notebooks (killed now):\n  {listing}")


@pytest.fixture(scope="session")
def real_servers() -> dict[str, dict[str, Any]]:
    """The two servers: kind -> {url, username, password, pid, log}."""
    return json.loads(os.environ[SERVERS_VAR])


@pytest.fixture(scope="session")
def find_leftovers() -> Any:
    """`leftovers(var, value, exclude)`: the processes marked var=value still alive, killed."""
    return leftovers
