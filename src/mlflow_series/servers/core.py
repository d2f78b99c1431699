"""The lifecycle every setup shares: the state file, the Stack, start, reuse and stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlflow_series import config
from mlflow_series.servers.hosts import allowed_hosts_arg, browser_url, extra_hosts
from mlflow_series.servers.process import (
    _CHILDREN,
    _WATCHDOGS,
    HOST,
    STOP_GRACE,
    ServerError,
    _http_ok,
    _process,
    display_path,
    group_members,
    listener_is_ours,
    log_tail,
    require_process_groups,
    server_env,
    stop_group,
)

import psutil
import requests

SETUPS = ("local", "remote", "auth", "serve", "ui")
#: Preferred ports (5000 is avoided: macOS uses it for AirPlay); a busy one is replaced.
PORTS = {
    "ui": 5050,
    "local": 5051,
    "remote": 5052,
    "s3": 5053,
    "postgres": 5054,
    "auth": 5055,
    "serve": 5056,
}
#: The workspace each setup uses when none is given: the notebook that introduces it.
#: Where a presenter's servers live when started beforehand from a shell (`make server`,
#: `make remote-up`): outside every notebook's workspace, so fresh_workspace keeps them, and each
#: notebook of that setup reuses them (Stack.kept).
KEPT_WORKSPACE = "presenter"
KEPT_SETUPS = ("local", "remote")
KEPT_START_HINT = {"local": "`make server`", "remote": "`make remote-up`"}
KEPT_STOP_HINT = {"local": "`make server-down`", "remote": "`make remote-down`"}

#: The workspace of a setup started or stopped without naming one (the shell's `make` targets).
DEFAULT_WORKSPACES = {
    "local": KEPT_WORKSPACE,
    "remote": KEPT_WORKSPACE,
    "auth": "06_beyond_the_limits",
    "serve": "04_models",
    "ui": "01_local_tracking",
}

READY_TIMEOUT = 90.0

# --------------------------------------------------------------------------- state and the Stack


def _write_json(path: Path, data: dict[str, Any], private: bool = False) -> None:
    """Replace a JSON file atomically; a private one is never readable by others, even briefly."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


#: The query parameter that opens MLflow's UI (3.x) in its "Model training" view: the value the
#: UI's own GenAI / Model training switch puts in the URL (MLflow 3.17's UI bundle).
TRAINING_VIEW_QUERY = "workflowType=machine_learning"


@dataclass
class Stack:
    """A running setup: where to reach it, its processes, logs and state."""

    setup: str
    folder: Path
    tracking_uri: str
    ui_url: str
    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    external: bool = False
    reused: bool = False
    #: A presenter's server started beforehand (`make server`, `make remote-up`) that a notebook
    #: reuses: stop() leaves it running for the next notebook.
    kept: bool = False

    @property
    def processes(self) -> list[psutil.Process]:
        """Every live process of the setup (servers, their workers and children)."""
        procs: dict[int, psutil.Process] = {}
        for pid in self.pids.values():
            procs.update((proc.pid, proc) for proc in group_members(pid))
            # PostgreSQL puts each of its children in a session of its own: follow the tree too
            leader, children = _process(pid), []
            with contextlib.suppress(psutil.Error):
                children = leader.children(recursive=True) if leader else []
            for child in children:
                with contextlib.suppress(psutil.Error):
                    if child.status() != psutil.STATUS_ZOMBIE:
                        procs.setdefault(child.pid, child)
        return list(procs.values())

    def experiment_url(self, experiment_id: str) -> str:
        """The UI page of one experiment's runs table, in MLflow's "Model training" view.

        MLflow 3.17's UI opens every experiment in its GenAI view (traces, judges) until the
        reader picks *Model training* at its top left, a choice each browser keeps per server
        address (localStorage ``mlflow.workflowType_v1``); the experiment's
        ``mlflow.experimentKind`` tag does not change that. The query parameter
        ``workflowType=machine_learning`` opens the training view on the page it is part of, so
        this link lands on the runs table in any browser (checked by tests/test_ui.py).

        Raises:
            ValueError: on a model server (``serve``), which has no UI.
        """
        if self.setup == "serve":
            raise ValueError("a model server has no MLflow UI: use a tracking server's Stack")
        base = self.ui_url if self.ui_url.endswith("/") else self.ui_url + "/"
        return f"{base}#/experiments/{experiment_id}/runs?{TRAINING_VIEW_QUERY}"

    def is_running(self) -> bool:
        """True if every server process of the setup is alive."""
        return self.external or all(_process(pid) for pid in self.pids.values())

    def stop(self) -> str:
        """Stop every process of the setup and wait for them; safe to call twice.

        A real server (MLFLOW_SERIES_TRACKING_URI) and a presenter's kept server are left running.

        Returns:
            what happened, in words, for a notebook to print.
        """
        if self.external:
            return f"left running: the server named by {config.REMOTE_URI_VAR}"
        if self.kept:
            return f"left running: started beforehand ({KEPT_STOP_HINT[self.setup]} stops it)"
        stop(self.setup, self.folder.parent)
        return "stopped"

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __str__(self) -> str:
        title = {
            "local": "Local tracking server (SQLite + artifact folder)",
            "remote": "Remote-style stack (PostgreSQL + S3-compatible store + tracking server)",
            "auth": "Tracking server with basic auth (SQLite + artifact folder)",
            "serve": "Model server",
            "ui": "MLflow UI on the local store (mlflow ui)",
        }[self.setup]
        if self.external:
            return f"Using the server named by {config.REMOTE_URI_VAR}: {self.tracking_uri}"
        state = "reused (already running)" if self.reused else "started"
        if self.kept:
            state = f"reused (started beforehand with {KEPT_START_HINT[self.setup]})"
        where = "URL" if self.setup == "serve" else "MLflow UI and tracking URI"
        lines = [f"{title}: {state}", f"  {where}: {self.ui_url}"]
        if self.ui_url != self.tracking_uri and self.setup != "serve":  # e.g. in a codespace
            lines[1:] = [f"  MLflow UI: {self.ui_url}", f"  tracking URI: {self.tracking_uri}"]
        lines += [f"  {key}: {value}" for key, value in self.info.items()]
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def _folder(workspace: str | Path | None, setup: str) -> Path:
    """The folder of one setup inside a workspace (a name under the workspace root, or a path)."""
    if workspace is None:
        workspace = DEFAULT_WORKSPACES[setup]
    base = Path(workspace) if isinstance(workspace, Path) else config.workspace(workspace)
    folder = base / setup
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    return folder


def _state_file(folder: Path) -> Path:
    return folder / "state.json"


def _stack_from_state(state: dict[str, Any], folder: Path, reused: bool) -> Stack:
    return Stack(
        setup=state["setup"],
        folder=folder,
        tracking_uri=state["tracking_uri"],
        ui_url=state["ui_url"],
        pids=state["pids"],
        ports=state["ports"],
        logs={k: Path(v) for k, v in state["logs"].items()},
        info=state["info"],
        reused=reused,
    )


def _stop_state(state: dict[str, Any]) -> None:
    """Stop the process groups a state records, last started first."""
    for role, pid in reversed(list(state.get("pids", {}).items())):
        sig = signal.SIGINT if role == "postgres" else signal.SIGTERM  # SIGINT: fast shutdown
        stop_group(pid, sig)


def running(setup: str, workspace: str | Path | None = None) -> Stack | None:
    """The setup if it runs for this workspace; a stale state (dead process or owner) is cleaned."""
    folder = _folder(workspace, setup)
    state = _read_json(_state_file(folder))
    if state is None:
        return None
    alive = all(
        _process(pid, state["create_times"].get(role)) for role, pid in state["pids"].items()
    )
    owner = state.get("owner")
    owner_alive = owner is None or _process(owner["pid"], owner["create_time"]) is not None
    health = state.get("health_url")
    if alive and owner_alive and state.get("ready") and (not health or _http_ok(health, 3)):
        return _stack_from_state(state, folder, reused=True)
    _stop_state(state)
    _state_file(folder).unlink(missing_ok=True)
    return None


def stop(setup: str, workspace: str | Path | None = None) -> bool:
    """Stop a setup of a workspace; returns False if nothing was running. Idempotent."""
    _WATCHDOGS[:] = [proc for proc in _WATCHDOGS if proc.poll() is None]  # reap finished ones
    folder = _folder(workspace, setup)
    state = _read_json(_state_file(folder))
    if state is None:
        return False
    _stop_state(state)
    _state_file(folder).unlink(missing_ok=True)
    return True


class PortClash(ServerError):
    """Another program took a chosen port before our server bound it: start again elsewhere."""


class _Launcher:
    """Starts the processes of one setup, recording each in the state file as it goes."""

    def __init__(self, setup: str, folder: Path, watch: bool) -> None:
        self.folder = folder
        self.offsets: dict[str, int] = {}  # where each server's output of this start begins
        self.state: dict[str, Any] = {
            "setup": setup,
            "pids": {},
            "create_times": {},
            "ports": {},
            "logs": {},
            "info": {},
            "ready": False,
            "owner": None,
        }
        if watch:
            me = psutil.Process()
            self.state["owner"] = {"pid": me.pid, "create_time": me.create_time()}
        self.save()
        self.watchdog: subprocess.Popen | None = self._spawn_watchdog() if watch else None

    def save(self) -> None:
        _write_json(_state_file(self.folder), self.state)

    def _spawn_watchdog(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "mlflow_series.watchdog", str(os.getpid())]
        cmd.append(str(_state_file(self.folder)))
        with open(self.folder / "logs" / "watchdog.log", "ab") as log:
            proc = subprocess.Popen(
                cmd,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=server_env(),
            )
        _WATCHDOGS.append(proc)
        return proc

    def spawn(self, role: str, cmd: list[str], env: dict[str, str], **kwargs: Any) -> Any:
        """Start one server in its own process group, output to logs/<role>.log."""
        log = self.folder / "logs" / f"{role}.log"
        self.offsets[role] = log.stat().st_size if log.exists() else 0  # this start's output
        with open(log, "ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                **kwargs,
            )
        _CHILDREN[proc.pid] = proc
        self.state["pids"][role] = proc.pid
        self.state["create_times"][role] = psutil.Process(proc.pid).create_time()
        self.state["logs"][role] = str(log)
        self.save()
        return proc

    def wait_ready(self, role: str, proc: Any, check: Any, timeout: float = READY_TIMEOUT) -> None:
        """Wait until check() is true; raise with the log's tail if the process exits or stalls."""
        log = Path(self.state["logs"][role])
        port = self.state["ports"].get(role)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Another program may have taken the port in the same instant (two notebooks starting
            # at once): its answer is not ours, and our server is about to exit on the clash.
            if check() and (port is None or listener_is_ours(proc.pid, port) is not False):
                return
            code = proc.poll()
            if code is not None:
                with open(log, "rb") as handle:
                    handle.seek(self.offsets.get(role, 0))
                    if b"address already in use" in handle.read().lower():
                        raise PortClash(f"{role} found its port taken while starting")
                raise ServerError(
                    f"{role} exited with code {code} while starting. "
                    f"Last lines of {display_path(log)}:\n{log_tail(log)}"
                )
            time.sleep(0.1)
        raise ServerError(
            f"{role} did not answer within {timeout:.0f} s. "
            f"Last lines of {display_path(log)}:\n{log_tail(log)}"
        )

    def fail(self) -> None:
        """Undo a failed start: stop what was started, forget the state, end the watchdog."""
        _stop_state(self.state)
        _state_file(self.folder).unlink(missing_ok=True)
        if self.watchdog is not None:  # it may not have seen the state file yet: it would wait
            self.watchdog.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.watchdog.wait(timeout=STOP_GRACE)

    def done(self, tracking_uri: str, ui_url: str, health_url: str) -> Stack:
        """Record the setup as ready; the UI URL is the one a browser opens (in a codespace,
        the forwarded one; under JupyterHub, Binder or JupyterLab, the Jupyter server's proxy URL,
        except for a model server, which is called from the kernel)."""
        port = urlsplit(ui_url).port
        proxied = self.state["setup"] != "serve"
        ui_url = browser_url(ui_url, port, proxied) if port else ui_url
        if self.state.get("extra_hosts"):
            self.state["info"]["also answers as"] = ", ".join(self.state["extra_hosts"])
        self.state.update(tracking_uri=tracking_uri, ui_url=ui_url, health_url=health_url)
        self.state["ready"] = True
        self.save()
        return _stack_from_state(self.state, self.folder, reused=False)


def _external(setup: str) -> Stack | None:
    """The real server named by MLFLOW_SERIES_TRACKING_URI, checked to answer; None if unset."""
    uri = config.remote_tracking_uri()
    if uri is None:
        return None
    if not uri.startswith(("http://", "https://")):
        raise ServerError(f"{config.REMOTE_URI_VAR}={uri}: give the http(s):// URL of the server.")
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5)
    except requests.RequestException as exc:
        raise ServerError(
            f"The tracking server named by {config.REMOTE_URI_VAR}={uri} does not answer "
            f"({type(exc).__name__}). Check the URL, your network or VPN, or unset "
            f"{config.REMOTE_URI_VAR} to run the series' own local servers."
        ) from exc
    return Stack(setup, Path("."), tracking_uri=uri, ui_url=uri, external=True)


#: A real REST call: a server is ready once it answers it (200, or 401 when it asks for a login).
API_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"


def api_status(url: str, host: str | None = None, timeout: float = 3.0) -> int | None:
    """The HTTP status of a small REST call (searching one experiment), sent with `host` as the
    Host header when given; None if the server does not answer."""
    headers = {"Host": host} if host else {}
    try:
        return requests.get(url + API_PROBE, headers=headers, timeout=timeout).status_code
    except requests.RequestException:
        return None


def _mlflow_server(
    launcher: _Launcher,
    args: list[str],
    env: dict[str, str],
    port: int,
    allowed_hosts: Sequence[str] = (),
    verb: str = "server",
    **kw: Any,
) -> str:
    """Start `mlflow server` tuned for demos (1 worker, no job runner); return its URL once its
    REST API answers, under 127.0.0.1 and under every extra host name it must accept.

    Raises:
        ServerError: the server exits, does not answer within READY_TIMEOUT s, or refuses a Host
            it was told to accept; when it refuses a store made by an older MLflow, the message
            names `make upgrade` (see :mod:`mlflow_series.servers.upgrade`).
    """
    extra = extra_hosts(port, allowed_hosts)
    cmd = [sys.executable, "-m", "mlflow", verb, *args, *allowed_hosts_arg(extra)]
    cmd += ["--host", HOST, "--port", str(port), "--workers", "1"]
    proc = launcher.spawn("mlflow", cmd, env, **kw)
    log = Path(launcher.state["logs"]["mlflow"])
    launcher.state["ports"]["mlflow"] = port
    url = f"http://{HOST}:{port}"
    try:
        launcher.wait_ready("mlflow", proc, lambda: api_status(url) in (200, 401))
    except ServerError as exc:
        from mlflow_series.servers.upgrade import schema_refusal  # imports this module

        refusal = schema_refusal(
            launcher.state["setup"], launcher.folder, log, launcher.offsets["mlflow"]
        )
        if refusal is None:
            raise
        raise refusal from exc
    for host in (h for h in extra if "*" not in h):
        if (status := api_status(url, host)) not in (200, 401):
            raise ServerError(
                f"The server answers {status} to requests for Host {host!r}, which it was told to "
                f"accept. Last lines of {display_path(launcher.state['logs']['mlflow'])}:\n"
                f"{log_tail(Path(launcher.state['logs']['mlflow']))}"
            )
    launcher.state["extra_hosts"] = extra
    return url


def _kept(setup: str, workspace: str | Path | None) -> Stack | None:
    """A presenter's server of this setup, started beforehand, if one runs and the caller is a
    notebook's workspace; the notebook's own experiments and registered models on it are cleared
    first, so its outputs are those of a fresh server (see servers.kept)."""
    if setup not in KEPT_SETUPS or workspace is None:
        return None
    root = config.workspace_root()
    kept_folder = root / KEPT_WORKSPACE / setup  # not _folder: a start must not create it
    if not _state_file(kept_folder).exists():
        return None
    folder = _folder(workspace, setup)
    # only the notebooks' workspaces, beside the kept one (not a folder elsewhere, e.g. a test's)
    if folder.parent.parent != root or folder == kept_folder:
        return None
    if (stack := running(setup, KEPT_WORKSPACE)) is None:
        return None
    from mlflow_series.servers.kept import clear_notebook  # imports mlflow: only when needed

    stack.kept = True
    # Once per fresh workspace: a second start in the same session (e.g. notebook 03 restarting
    # its stack to show the data stays) must find the runs it made.
    marker = folder / "kept-server.json"
    if (_read_json(marker) or {}).get("tracking_uri") != stack.tracking_uri:
        clear_notebook(stack.tracking_uri, folder.parent.name)
        _write_json(marker, {"tracking_uri": stack.tracking_uri, "cleared": True})
    return stack


def _start(setup: str, workspace: str | Path | None, watch: bool, body: Any) -> Stack:
    """Common frame of every start: external server, kept server, reuse, launch, clean up."""
    # The model server and notebook 01's UI are always local, even with a real tracking server.
    if setup not in ("serve", "ui") and (stack := _external(setup)) is not None:
        return stack
    require_process_groups()  # native Windows: a clear error naming WSL2 and Codespaces
    if (stack := _kept(setup, workspace)) is not None:
        return stack
    if (stack := running(setup, workspace)) is not None:
        return stack
    folder = _folder(workspace, setup)
    for attempt in range(PORT_CLASH_ATTEMPTS):
        launcher = _Launcher(setup, folder, watch)
        try:
            return body(launcher, folder)
        except PortClash:
            launcher.fail()
            if attempt + 1 == PORT_CLASH_ATTEMPTS:
                raise
        except BaseException:
            launcher.fail()
            raise
    raise AssertionError("unreachable")


#: Starts tried when another program takes a chosen port before our server binds it.
PORT_CLASH_ATTEMPTS = 3
