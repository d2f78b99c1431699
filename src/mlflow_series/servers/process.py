"""Processes, ports, logs and process groups: the plumbing under every setup."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlflow_series import config

import psutil
import requests

HOST = "127.0.0.1"

STOP_GRACE = 5.0


#: Set to "1" in the environment of every process the helpers start, so that they can tell their
#: own processes from anybody else's (see :mod:`mlflow_series.servers.holders`).
SERIES_MARK = "MLFLOW_SERIES_PROCESS"


class ServerError(RuntimeError):
    """A setup could not be started, reached or stopped; the message says why and what to do."""


#: What a laptop without POSIX process groups (native Windows) can do instead.
WINDOWS_ROUTES = (
    "On Windows, follow the series in WSL2 (Ubuntu: the README's section \"Windows, step by "
    'step") or in GitHub Codespaces (a browser and a GitHub account), or read along on the '
    "series' website (every notebook with its outputs)."
)


def has_process_groups() -> bool:
    """True on Linux and macOS: the helpers start each server in a process group of its own and
    stop the whole group. Native Windows has no such groups (no os.killpg, os.getpgid)."""
    return all(hasattr(os, name) for name in ("killpg", "getpgid", "setsid"))


def require_process_groups() -> None:
    """Refuse to start a server, with the routes to take, where POSIX process groups are missing.

    Raises:
        ServerError: on native Windows, naming WSL2 and GitHub Codespaces.
    """
    if not has_process_groups():
        raise ServerError(
            "The series' servers need POSIX process groups (Linux, macOS), which native Windows "
            f"does not have, so no server was started. {WINDOWS_ROUTES}"
        )


_CHILDREN: dict[int, subprocess.Popen] = {}
_WATCHDOGS: list[subprocess.Popen] = []


def display_path(path: Path | str) -> str:
    """A path as a person should see it: relative to the repo when inside it."""
    path = Path(path)
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(config.REPO_ROOT).as_posix()
    return str(path)


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "posix":
            # As the servers themselves do: a port whose last connections linger in TIME_WAIT
            # after a stop is free again (without this a restarted server would move ports).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int, taken: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    """The preferred port if free, else a free port the system chooses."""
    if preferred not in taken and port_is_free(preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, or a note that it is empty or missing."""
    if not path.exists() or path.stat().st_size == 0:
        return f"({display_path(path)} is empty)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server process: quiet, no stray tracking URI, no cloud credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_TRACKING_"))}
    env.pop("MLFLOW_S3_ENDPOINT_URL", None)
    env.update(config.QUIET_ENV)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job runner nor huey consumers
    env["PYTHONUNBUFFERED"] = "1"
    env[SERIES_MARK] = "1"
    bin_dir = str(Path(sys.executable).parent)  # `mlflow models serve` execs uvicorn from here
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def _process(pid: int, create_time: float | None = None) -> psutil.Process | None:
    """The live process with this pid (and start time, when given), or None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            return None
        if create_time is not None and abs(proc.create_time() - create_time) > 1:
            return None
        return proc
    except psutil.Error:
        return None


def group_members(pgid: int) -> list[psutil.Process]:
    """Every live process of a process group."""
    members = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def _wait_group(pgid: int, timeout: float) -> bool:
    """Wait until no live process is left in a group (zombies count as gone: another process,
    or a slow init, may reap them late); returns False on timeout."""
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_group(pgid: int, sig: int = signal.SIGTERM, grace: float = STOP_GRACE) -> None:
    """Signal a whole process group, wait up to `grace` seconds, then kill what is left."""
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        if not _wait_group(pgid, grace):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            _wait_group(pgid, grace)
    child = _CHILDREN.pop(pgid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace)  # reap it: it was our child


def listener_is_ours(pid: int, port: int) -> bool | None:
    """True if the process `pid`, its group or its children listen on 127.0.0.1:port; False if
    another process does (or none); None when this system does not say (e.g. macOS without root).
    """
    try:
        listeners = [
            conn
            for conn in psutil.net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
        ]
    except (psutil.AccessDenied, PermissionError):
        return None
    if any(conn.pid is None for conn in listeners):
        return None  # a process of another user: its pid is hidden
    ours = {pid}
    with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
        ours.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        ours.update(proc.pid for proc in group_members(os.getpgid(pid)))
    return any(conn.pid in ours for conn in listeners)


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    """True if a GET on url answers 200."""
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False
