"""The servers helper: start, reuse, survive crashes, stop everything, and fail with clear errors.

Tests marked ``slow`` start real servers (a few seconds each). Every test works in its own
temporary workspace and stops what it starts, even when it fails. Preferred ports are replaced by
free ones for every test, so the tests do not collide with servers that notebooks (run in
parallel by ``make test``) or a developer started on the default ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

from mlflow_series import config, s3store, servers
from mlflow_series.servers import core, process, team

import psutil
import pytest
import requests

PY = sys.executable
#: The bound the spec gives for servers to disappear once their owner is gone.
WATCHDOG_BOUND = 10.0


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_ports() -> dict[str, int]:
    """One free port per role, all distinct."""
    ports: dict[str, int] = {}
    for key in servers.PORTS:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[key] = port
    return ports


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep off the default ports (a notebook or a developer's server may hold them), start
    without a tracking URI, and forget the one a test gave MLflow (it also sets the variable)."""
    for key, port in fresh_ports().items():
        monkeypatch.setitem(servers.PORTS, key, port)
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(None)


def cleanup_workspace(ws: Path) -> None:
    """Stop every setup of a workspace and delete PostgreSQL data kept outside it."""
    for setup in servers.SETUPS:
        with contextlib.suppress(Exception):
            servers.stop(setup, ws)
    pg = team._pg_data_dir(ws / "remote").parent
    if pg.name.startswith("mlflow-series-pg-"):
        shutil.rmtree(pg, ignore_errors=True)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Path]:
    """This test's workspace; whatever runs in it is stopped afterwards."""
    yield tmp_path
    cleanup_workspace(tmp_path)


@contextlib.contextmanager
def module_workspace(factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    path = factory.mktemp(name)
    try:
        yield path
    finally:
        cleanup_workspace(path)


def alive(pid: int, create_time: float | None = None) -> bool:
    """True if the process runs (a zombie or a reused pid counts as gone)."""
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 0.5:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def members(stack: servers.Stack) -> list[tuple[int, float]]:
    """(pid, start time) of every process of every group of the stack."""
    out = []
    for proc in stack.processes:
        with contextlib.suppress(psutil.Error):
            out.append((proc.pid, proc.create_time()))
    return out


def wait_gone(procs: list[tuple[int, float]], timeout: float) -> list[int]:
    """Wait until none of the processes runs; returns the pids still alive after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid, ctime in procs if alive(pid, ctime)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def wait_missing(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()


def assert_nothing_left(folder: Path) -> None:
    """After a failed start: no state, no watchdog, no process started from the folder."""
    assert servers.running(folder.name, folder.parent) is None
    assert not core._state_file(folder).exists()
    # a watchdog notices a removed state file within its poll interval (0.5 s)
    deadline = time.monotonic() + 3
    while watchdogs_of(core._state_file(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert watchdogs_of(core._state_file(folder)) == []
    assert started_from(folder.parent) == []


def started_from(ws: Path) -> list[list[str]]:
    """Live processes whose command line names the workspace (or its PostgreSQL data dir)."""
    marks = {str(ws), str(team._pg_data_dir(ws / "remote"))}
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if any(mark in cmdline for mark in marks) and alive(proc.pid):
            found.append(proc.info["cmdline"])
    return found


def groups_empty(pgids: list[int]) -> bool:
    return all(not servers.group_members(pgid) for pgid in pgids)


def assert_stopped(stack: servers.Stack, procs: list[tuple[int, float]]) -> None:
    """Nothing of the stack runs, its state file is gone and its port is closed."""
    assert wait_gone(procs, 1.0) == []
    assert groups_empty(list(stack.pids.values()))
    assert not core._state_file(stack.folder).exists()
    assert not process._http_ok(f"{stack.ui_url}/health")


def watchdogs_of(state_file: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "mlflow_series.watchdog" in cmd and str(state_file) in cmd:
            found.append(proc)
    return found


def kill_groups(pgids: list[int]) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def kill_all(stack: servers.Stack) -> list[tuple[int, float]]:
    """SIGKILL every process of a stack at once (PostgreSQL's children have their own groups)."""
    procs = members(stack)
    kill_groups(list(stack.pids.values()))
    for pid, _ in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return procs


def scrubbed_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with no cloud credentials, no S3 endpoint and no tracking URI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env.update(config.QUIET_ENV, HOME=str(home), PYTHONUNBUFFERED="1", **extra)
    return env


# ---- MLflow content used by several tests


def tiny_data():
    import pandas as pd

    X = pd.DataFrame({"area": [50.0, 80.0, 120.0, 65.0, 200.0], "rooms": [2.0, 3.0, 4.0, 2.0, 6.0]})
    y = 1000 * X["area"] + 5000 * X["rooms"]
    return X, y


def log_content(uri: str, experiment: str, model_name: str) -> dict[str, str]:
    """A run with a param, metric history, text artifact and a registered sklearn model."""
    import mlflow
    from sklearn.linear_model import LinearRegression

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    X, y = tiny_data()
    model = LinearRegression().fit(X, y)
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_param("alpha", "0.5")
        for step, value in enumerate([3.0, 2.0, 1.5]):
            mlflow.log_metric("rmse", value, step=step)
        mlflow.log_text("durable notes\n", "notes/hello.txt")
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    version = mlflow.register_model(info.model_uri, model_name)
    return {"run_id": run.info.run_id, "experiment_id": exp_id, "version": version.version}


def snapshot(uri: str, ids: dict[str, str], model_name: str) -> dict:
    """What the server returns about the content of log_content: compared before and after."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(ids["run_id"])
    text = mlflow.artifacts.load_text(f"runs:/{ids['run_id']}/notes/hello.txt")
    versions = client.search_model_versions(f"name = '{model_name}'")
    model = mlflow.sklearn.load_model(f"models:/{model_name}/{ids['version']}")
    X, _ = tiny_data()
    return {
        "params": run.data.params,
        "history": [(m.step, m.value) for m in client.get_metric_history(ids["run_id"], "rmse")],
        "text": text,
        "versions": sorted((v.version, v.run_id, v.status) for v in versions),
        "predictions": [round(float(v), 6) for v in model.predict(X)],
        "artifacts": sorted(f.path for f in client.list_artifacts(ids["run_id"], "notes")),
    }


# --------------------------------------------------------------------------- shared stacks


def _module_stack(factory: pytest.TempPathFactory, setup: str) -> Iterator[servers.Stack]:
    """One stack of a setup for a whole test module, on fresh ports, with no remote override."""
    with (
        module_workspace(factory, setup) as path,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key, port in fresh_ports().items():
            mp.setitem(servers.PORTS, key, port)
        mp.delenv(config.REMOTE_URI_VAR, raising=False)
        with servers.START[setup](path) as stack:
            yield stack


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Stack]:
    yield from _module_stack(tmp_path_factory, "local")


@pytest.fixture(scope="module")
def remote_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Stack]:
    yield from _module_stack(tmp_path_factory, "remote")


# --------------------------------------------------------------------------- unit tests


def test_pick_port_prefers_the_given_port_when_free():
    port = free_port()
    assert servers.port_is_free(port)
    assert servers.pick_port(port) == port


def test_pick_port_avoids_a_busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        busy = sock.getsockname()[1]
        assert not servers.port_is_free(busy)
        chosen = servers.pick_port(busy)
        assert chosen != busy
        assert servers.port_is_free(chosen)


def test_pick_port_avoids_ports_already_taken_by_the_stack():
    port = free_port()
    chosen = servers.pick_port(port, {port})  # free, but already given to another server
    assert chosen != port and servers.port_is_free(chosen)
    assert servers.pick_port(port, {port, chosen}) not in {port, chosen}


def test_stray_tracking_uri_is_warned_about_and_removed(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    with pytest.warns(UserWarning, match="MLFLOW_TRACKING_URI=http://127.0.0.1:1"):
        config.apply_quiet_env()
    assert "MLFLOW_TRACKING_URI" not in os.environ


def test_tracking_uri_equal_to_the_series_variable_is_kept(monkeypatch, recwarn):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv(config.REMOTE_URI_VAR, "http://127.0.0.1:1")
    config.apply_quiet_env()
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:1"
    assert not [w for w in recwarn if "MLFLOW_TRACKING_URI" in str(w.message)]


def test_a_missing_tracking_uri_gives_no_warning(monkeypatch, recwarn):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config.apply_quiet_env()
    assert not [w for w in recwarn if "MLFLOW_TRACKING_URI" in str(w.message)]


ORPHAN_MAKER = textwrap.dedent(
    """
    import subprocess, sys, time
    # a server in its own group whose parent never reaps it: once killed, it stays a zombie
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(60)
    """
)


def test_stop_group_does_not_wait_for_zombies_nobody_reaps():
    parent = subprocess.Popen([PY, "-c", ORPHAN_MAKER], stdout=subprocess.PIPE, text=True)
    try:
        pgid = int(parent.stdout.readline())
        assert servers.group_members(pgid)
        started = time.monotonic()
        servers.stop_group(pgid)
        assert time.monotonic() - started < 2  # not the 2 x 5 s grace of waiting on a zombie
        assert psutil.Process(pgid).status() == psutil.STATUS_ZOMBIE
        assert servers.group_members(pgid) == []
    finally:
        parent.kill()
        parent.wait()


def test_private_json_is_never_readable_by_others(tmp_path, monkeypatch):
    modes = []
    real_replace = os.replace

    def replace(src, dst):
        modes.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    core._write_json(tmp_path / "secrets.json", {"admin_password": "x"}, private=True)
    assert modes == [0o600]
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600


# ---- the S3 store's disk mirror, with an in-process moto backend


@pytest.fixture
def backend():
    """moto's in-process S3 backend, emptied before and after (as a restarted store would be)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.reset()
    yield backend
    backend.reset()


def restart(backend):
    """What a restart of the store does to its memory: everything is gone."""
    backend.reset()
    assert not backend.buckets
    return backend


def test_disk_mirror_round_trip(tmp_path, backend):
    mirror = s3store.DiskMirror(tmp_path, backend)
    backend.create_bucket("mirror-a", "us-east-1")
    backend.put_object("mirror-a", "runs/1/model.pkl", b"weights")
    backend.put_object("mirror-a", "runs/2/model.pkl", b"weights")  # same content: one blob
    backend.put_object("mirror-a", "runs/1/notes.txt", b"hello")
    mirror.sync("mirror-a")
    manifest = json.loads((tmp_path / "mirror-a" / s3store.MANIFEST).read_text())
    assert sorted(manifest) == ["runs/1/model.pkl", "runs/1/notes.txt", "runs/2/model.pkl"]
    assert len(list((tmp_path / "mirror-a" / "blobs").iterdir())) == 2
    assert mirror.check() == []

    restored = restart(backend)
    assert s3store.DiskMirror(tmp_path, restored).restore() == 3
    assert restored.get_object("mirror-a", "runs/1/notes.txt").value == b"hello"
    assert restored.get_object("mirror-a", "runs/2/model.pkl").value == b"weights"


def test_disk_mirror_follows_overwrites_and_deletes(tmp_path, backend):
    mirror = s3store.DiskMirror(tmp_path, backend)
    backend.create_bucket("mirror-b", "us-east-1")
    backend.put_object("mirror-b", "a.txt", b"one")
    backend.put_object("mirror-b", "b.txt", b"two")
    mirror.sync("mirror-b")
    backend.put_object("mirror-b", "a.txt", b"one, rewritten")
    backend.delete_object("mirror-b", "b.txt")
    mirror.sync("mirror-b")
    blobs = tmp_path / "mirror-b" / "blobs"
    assert len(list(blobs.iterdir())) == 1  # the old blobs are gone
    restored = restart(backend)
    assert s3store.DiskMirror(tmp_path, restored).restore() == 1
    assert restored.get_object("mirror-b", "a.txt").value == b"one, rewritten"

    backend.delete_object("mirror-b", "a.txt")
    backend.delete_bucket("mirror-b")
    mirror.sync("mirror-b")
    assert not (tmp_path / "mirror-b").exists()


def test_disk_mirror_detects_and_forgets_lost_objects(tmp_path, backend):
    mirror = s3store.DiskMirror(tmp_path, backend)
    backend.create_bucket("mirror-c", "us-east-1")
    for key, data in {"gone.txt": b"x", "bad.txt": b"y", "fine.txt": b"z"}.items():
        backend.put_object("mirror-c", key, data)
    mirror.sync("mirror-c")
    manifest = json.loads((tmp_path / "mirror-c" / s3store.MANIFEST).read_text())
    blobs = tmp_path / "mirror-c" / "blobs"
    (blobs / manifest["gone.txt"]["sha256"]).unlink()
    (blobs / manifest["bad.txt"]["sha256"]).write_bytes(b"bit rot")
    problems = mirror.check()
    assert sorted(problems) == [
        "s3://mirror-c/bad.txt: damaged (checksum differs)",
        "s3://mirror-c/gone.txt: missing",
    ]
    assert mirror.forget_lost() == 2
    assert mirror.check() == []
    restored = restart(backend)
    assert s3store.DiskMirror(tmp_path, restored).restore() == 1
    assert restored.get_object("mirror-c", "fine.txt").value == b"z"


def test_mirroring_app_syncs_only_after_successful_writes(tmp_path):
    synced: list[str] = []

    class Mirror:
        def sync(self, bucket: str) -> None:
            synced.append(bucket)

    def app(environ, start_response):
        code = "200 OK" if environ["PATH_INFO"] != "/refused/key" else "403 Forbidden"
        start_response(code, [("Content-Type", "text/plain")])
        return [b"done"]

    wrapped = s3store.MirroringApp(app, Mirror())
    started: list[str] = []

    def call(method: str, path: str) -> list[bytes]:
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": ""}
        return list(wrapped(environ, lambda code, headers, exc=None: started.append(code)))

    assert call("GET", "/bucket/key") == [b"done"]
    assert call("PUT", "/bucket/key") == [b"done"]
    assert call("DELETE", "/other%2Dbucket/key") == [b"done"]
    assert call("PUT", "/refused/key") == [b"done"]
    assert synced == ["bucket", "other-bucket"]


def test_mirroring_app_refuses_bucket_names_s3_refuses():
    calls: list[str] = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b""]

    class Mirror:
        def sync(self, bucket: str) -> None:
            pass

    wrapped = s3store.MirroringApp(app, Mirror())
    for name in ["Bad_Bucket", "ab", "UPPER", "a..b", "192.168.0.1", "-dash", "x" * 64]:
        codes: list[str] = []
        environ = {"REQUEST_METHOD": "PUT", "PATH_INFO": f"/{name}", "QUERY_STRING": ""}
        body = b"".join(wrapped(environ, lambda code, headers, exc=None, c=codes: c.append(code)))
        assert codes == ["400 Bad Request"], name
        assert b"<Code>InvalidBucketName</Code>" in body
    assert calls == []
    for name in ["mlflow-artifacts", "my.bucket.2", "abc"]:
        environ = {"REQUEST_METHOD": "PUT", "PATH_INFO": f"/{name}", "QUERY_STRING": ""}
        assert list(wrapped(environ, lambda code, headers, exc=None: None)) == [b""]
    assert calls == ["/mlflow-artifacts", "/my.bucket.2", "/abc"]


# --------------------------------------------------------------------------- the local server


@pytest.mark.slow
def test_local_server_answers_and_describes_itself(local_stack):
    stack = local_stack
    port = stack.ports["mlflow"]
    assert stack.setup == "local" and not stack.external and not stack.reused
    assert stack.tracking_uri == stack.ui_url == f"http://127.0.0.1:{port}"
    assert set(stack.pids) == {"mlflow"} and set(stack.ports) == {"mlflow"}
    assert stack.logs["mlflow"].is_file()
    assert stack.is_running()
    assert stack.pids["mlflow"] in [p.pid for p in stack.processes]
    resp = requests.get(f"{stack.tracking_uri}/health", timeout=10)
    assert resp.status_code == 200 and resp.text.strip() == "OK"
    assert "mlflow.db" in str(stack)
    assert stack.tracking_uri in str(stack)


@pytest.mark.slow
def test_local_server_tracks_runs_and_artifacts(local_stack, tmp_path):
    import mlflow

    client = mlflow.MlflowClient(local_stack.tracking_uri)
    exp_id = client.create_experiment("test-local-tracking")
    run = client.create_run(exp_id)
    client.log_param(run.info.run_id, "alpha", "0.1")
    client.log_metric(run.info.run_id, "rmse", 0.25)
    note = tmp_path / "note.txt"
    note.write_text("hello artifact\n")
    client.log_artifact(run.info.run_id, str(note), "docs")
    client.set_terminated(run.info.run_id)

    fetched = client.get_run(run.info.run_id)
    assert fetched.data.params == {"alpha": "0.1"}
    assert fetched.data.metrics == {"rmse": 0.25}
    assert fetched.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
    out = client.download_artifacts(run.info.run_id, "docs/note.txt", str(tmp_path / "out"))
    assert Path(out).read_text() == "hello artifact\n"
    stored = list((local_stack.folder / "artifacts").rglob("note.txt"))
    assert len(stored) == 1 and stored[0].read_text() == "hello artifact\n"


@pytest.mark.slow
def test_starting_again_reuses_the_running_server(local_stack):
    again = servers.start_local(local_stack.folder.parent)
    assert again.reused
    assert again.pids == local_stack.pids and again.ports == local_stack.ports
    assert "reused" in str(again)
    found = servers.running("local", local_stack.folder.parent)
    assert found is not None and found.pids == local_stack.pids


@pytest.mark.slow
def test_external_server_is_used_and_never_stopped(local_stack, ws, monkeypatch):
    monkeypatch.setenv(config.REMOTE_URI_VAR, local_stack.tracking_uri)
    stack = servers.start_local(ws)
    assert stack.external and stack.tracking_uri == local_stack.tracking_uri
    assert stack.pids == {}
    assert not (ws / "local" / "state.json").exists()
    stack.stop()
    with stack:
        pass
    assert process._http_ok(f"{local_stack.tracking_uri}/health")
    assert local_stack.is_running()
    assert started_from(ws) == []
    assert watchdogs_of(ws / "local" / "state.json") == []


@pytest.mark.slow
def test_unreachable_external_server_is_a_clear_error(ws, monkeypatch):
    closed = free_port()
    monkeypatch.setenv(config.REMOTE_URI_VAR, f"http://127.0.0.1:{closed}")
    started = time.monotonic()
    with pytest.raises(servers.ServerError, match=config.REMOTE_URI_VAR):
        servers.start_local(ws)
    assert time.monotonic() - started < 10
    # a server that accepts connections but never answers
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        monkeypatch.setenv(config.REMOTE_URI_VAR, f"http://127.0.0.1:{hole.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(servers.ServerError, match=config.REMOTE_URI_VAR):
            servers.start_remote(ws)
        assert time.monotonic() - started < 10
    assert not (ws / "local" / "state.json").exists()
    assert not (ws / "remote" / "state.json").exists()
    assert not (ws / "remote" / "postgres").exists()


@pytest.mark.slow
def test_a_stale_state_is_cleaned_and_stop_is_idempotent(ws):
    # a crash: the server group is SIGKILLed, the state file stays behind
    crashed = servers.start_local(ws)
    state_file = core._state_file(crashed.folder)
    procs = members(crashed)
    kill_groups(list(crashed.pids.values()))
    assert wait_gone(procs, 10) == []
    assert state_file.exists()
    assert servers.running("local", ws) is None  # detected and cleaned
    assert not state_file.exists()

    # starting again starts fresh
    stack = servers.start_local(ws)
    try:
        assert not stack.reused and stack.pids["mlflow"] != crashed.pids["mlflow"]
        assert process._http_ok(f"{stack.tracking_uri}/health")
        procs = members(stack)
        assert servers.stop("local", ws) is True
        assert_stopped(stack, procs)
        assert servers.stop("local", ws) is False  # idempotent
        stack.stop()  # and through the Stack as well
        crashed.stop()
        assert servers.running("local", ws) is None
    finally:
        stack.stop()
    deadline = time.monotonic() + 3  # the watchdog polls every 0.5 s
    while watchdogs_of(state_file) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert watchdogs_of(state_file) == []


@pytest.mark.slow
def test_an_exception_inside_with_stops_the_server(ws):
    holder: dict = {}
    with pytest.raises(ZeroDivisionError), servers.start_local(ws) as stack:
        holder["stack"], holder["procs"] = stack, members(stack)
        assert holder["procs"]
        1 / 0  # noqa: B018
    assert_stopped(holder["stack"], holder["procs"])


@pytest.mark.slow
def test_a_busy_preferred_port_is_replaced(ws, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        busy = sock.getsockname()[1]
        monkeypatch.setitem(servers.PORTS, "local", busy)
        with servers.start_local(ws) as stack:
            port = stack.ports["mlflow"]
            assert port != busy
            assert stack.tracking_uri == f"http://127.0.0.1:{port}"
            assert f":{port}" in str(stack)
            assert process._http_ok(f"{stack.tracking_uri}/health")


@pytest.mark.slow
def test_server_exiting_during_startup_is_reported_with_its_log(ws):
    folder = ws / "local"
    folder.mkdir()
    (folder / "mlflow.db").write_bytes(b"this is not a SQLite database" * 100)
    started = time.monotonic()
    with pytest.raises(servers.ServerError) as err:
        servers.start_local(ws)
    assert time.monotonic() - started < 30  # about 4 s: the import of mlflow, then the error
    message = str(err.value)
    assert "mlflow exited with code" in message and "Last lines of" in message
    assert "database" in message.lower()  # the server's own complaint, from its log
    assert_nothing_left(folder)


# --------------------------------------------------------------------------- durability


@pytest.mark.slow
def test_local_content_survives_a_crash_and_a_restart(ws):
    stack = servers.start_local(ws)
    try:
        ids = log_content(stack.tracking_uri, "durable-local", "durable-local-model")
        before = snapshot(stack.tracking_uri, ids, "durable-local-model")
        assert before["text"] == "durable notes\n" and before["versions"][0][2] == "READY"

        # (a) the server is SIGKILLed mid-session, then started again
        procs = members(stack)
        kill_groups(list(stack.pids.values()))
        assert wait_gone(procs, 10) == []
        stack = servers.start_local(ws)
        assert not stack.reused
        assert snapshot(stack.tracking_uri, ids, "durable-local-model") == before

        # (b) a normal stop and start
        stack.stop()
        stack = servers.start_local(ws)
        assert not stack.reused
        assert snapshot(stack.tracking_uri, ids, "durable-local-model") == before
    finally:
        stack.stop()


# --------------------------------------------------------------------------- the remote stack


CLIENT = textwrap.dedent(
    """
    import json, os, sys, tempfile
    leaked = [k for k in os.environ if k.startswith("AWS_") or k == "MLFLOW_S3_ENDPOINT_URL"]
    assert not leaked, leaked
    import mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    exp_id = mlflow.set_experiment("remote-client").experiment_id
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_param("where", "client")
        mlflow.log_metric("score", 0.75)
        mlflow.log_text("stored in the bucket, fetched through the server", "docs/note.txt")
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="docs/note.txt", dst_path=tempfile.mkdtemp()
    )
    print(json.dumps({"run_id": run.info.run_id, "experiment_id": exp_id,
                      "artifact_uri": run.info.artifact_uri, "text": open(path).read()}))
    """
)


@pytest.mark.slow
def test_remote_stack_describes_itself(remote_stack):
    stack = remote_stack
    assert set(stack.pids) == {"postgres", "s3", "mlflow"}
    assert set(stack.ports) == {"postgres", "s3", "mlflow"}
    assert len(set(stack.ports.values())) == 3
    assert all(path.is_file() for path in stack.logs.values())
    names = [proc.name() for proc in stack.processes]
    assert names.count("postgres") > 3  # the postmaster and its children (own sessions)
    assert stack.is_running()
    assert process._http_ok(f"{stack.tracking_uri}/health")
    assert servers.postgres_uri(stack).endswith(f"127.0.0.1:{stack.ports['postgres']}/mlflow")
    assert servers.S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in str(stack)


@pytest.mark.slow
def test_remote_client_needs_no_credentials(remote_stack, tmp_path):
    import psycopg2

    result = subprocess.run(
        [PY, "-c", CLIENT, remote_stack.tracking_uri],
        env=scrubbed_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["text"] == "stored in the bucket, fetched through the server"
    assert out["artifact_uri"].startswith("mlflow-artifacts:")

    conn = psycopg2.connect(
        host="127.0.0.1", port=remote_stack.ports["postgres"], user="postgres", dbname="mlflow"
    )
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT experiment_id, status FROM runs WHERE run_uuid = %s", (out["run_id"],)
            )
            assert cur.fetchall() == [(int(out["experiment_id"]), "FINISHED")]
            cur.execute("SELECT value FROM params WHERE run_uuid = %s", (out["run_id"],))
            assert cur.fetchall() == [("client",)]
    finally:
        conn.close()

    import sqlalchemy

    engine = sqlalchemy.create_engine(servers.postgres_uri(remote_stack))
    try:
        with engine.connect() as conn:
            count = conn.execute(
                sqlalchemy.text("SELECT count(*) FROM runs WHERE run_uuid = :r"),
                {"r": out["run_id"]},
            ).scalar()
        assert count == 1
    finally:
        engine.dispose()

    s3 = servers.s3_client(remote_stack)
    listing = s3.list_objects_v2(Bucket=servers.BUCKET, Prefix="mlflow/")
    keys = [obj["Key"] for obj in listing.get("Contents", [])]
    mine = [k for k in keys if out["run_id"] in k and k.endswith("docs/note.txt")]
    assert len(mine) == 1, keys
    body = s3.get_object(Bucket=servers.BUCKET, Key=mine[0])["Body"].read()
    assert body == b"stored in the bucket, fetched through the server"
    # ... and it is on disk, under the store's folder
    manifest = json.loads(
        (remote_stack.folder / "s3" / servers.BUCKET / s3store.MANIFEST).read_text()
    )
    assert mine[0] in manifest


@pytest.mark.slow
def test_every_listener_binds_loopback_only(remote_stack):
    listening: dict[int, str] = {}
    for proc in remote_stack.processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN or (
                    conn.type == socket.SOCK_DGRAM and conn.laddr
                ):
                    listening[conn.laddr.port] = conn.laddr.ip
    assert set(remote_stack.ports.values()) <= set(listening), listening
    assert set(listening.values()) == {"127.0.0.1"}, listening


@pytest.mark.slow
def test_remote_content_survives_crashes_and_restarts(ws):
    stack = servers.start_remote(ws)
    try:
        ids = log_content(stack.tracking_uri, "durable-remote", "durable-remote-model")
        before = snapshot(stack.tracking_uri, ids, "durable-remote-model")
        assert before["text"] == "durable notes\n" and before["versions"][0][2] == "READY"

        # (a) only the tracking server is SIGKILLed mid-session
        procs = members(stack)
        kill_groups([stack.pids["mlflow"]])
        stack = servers.start_remote(ws)
        assert not stack.reused
        assert wait_gone(procs, 10) == []  # the old stack was cleaned up, not left beside
        assert snapshot(stack.tracking_uri, ids, "durable-remote-model") == before

        # (b) the whole stack down and up again
        stack.stop()
        stack = servers.start_remote(ws)
        assert snapshot(stack.tracking_uri, ids, "durable-remote-model") == before

        # (c) every process SIGKILLed at once, right after a write
        import mlflow

        mlflow.set_tracking_uri(stack.tracking_uri)
        with mlflow.start_run(experiment_id=ids["experiment_id"]) as late:
            mlflow.log_text("written just before the crash", "late.txt")
        procs = kill_all(stack)
        assert wait_gone(procs, 10) == []
        stack = servers.start_remote(ws)
        assert not stack.reused
        assert snapshot(stack.tracking_uri, ids, "durable-remote-model") == before
        text = mlflow.artifacts.load_text(f"runs:/{late.info.run_id}/late.txt")
        assert text == "written just before the crash"
    finally:
        stack.stop()


@pytest.mark.slow
def test_lost_s3_objects_stop_the_start_until_accepted(ws):
    # fill the workspace's S3 store (run alone: quicker than the whole stack)
    port = free_port()
    store = subprocess.Popen(
        [PY, "-m", "mlflow_series.s3store", "--port", str(port), "--data", ws / "remote" / "s3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not process._http_ok(f"http://127.0.0.1:{port}"):
            assert store.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        team._create_bucket(f"http://127.0.0.1:{port}", servers.BUCKET)
        s3 = servers.s3_client(servers.Stack("remote", ws, "", "", ports={"s3": port}))
        s3.put_object(Bucket=servers.BUCKET, Key="mlflow/0/keep.txt", Body=b"keep me")
        s3.put_object(Bucket=servers.BUCKET, Key="mlflow/0/lose.txt", Body=b"lose me")
    finally:
        store.kill()
        store.wait()
    manifest = json.loads((ws / "remote" / "s3" / servers.BUCKET / s3store.MANIFEST).read_text())
    blobs = ws / "remote" / "s3" / servers.BUCKET / "blobs"
    (blobs / manifest["mlflow/0/lose.txt"]["sha256"]).unlink()

    with pytest.raises(servers.ServerError) as err:
        servers.start_remote(ws)
    message = str(err.value)
    assert "lost objects" in message
    assert "mlflow/0/lose.txt" in message
    assert "accept_loss=True" in message and "--reset" in message
    assert_nothing_left(ws / "remote")

    with servers.start_remote(ws, accept_loss=True) as stack:
        s3 = servers.s3_client(stack)
        listing = s3.list_objects_v2(Bucket=servers.BUCKET, Prefix="mlflow/0/")
        assert [obj["Key"] for obj in listing["Contents"]] == ["mlflow/0/keep.txt"]
        assert s3.get_object(Bucket=servers.BUCKET, Key="mlflow/0/keep.txt")["Body"].read() == (
            b"keep me"
        )


# --------------------------------------------------------------------------- faults


@pytest.mark.slow
def test_missing_postgres_programs_are_a_clear_error(ws, monkeypatch, tmp_path_factory):
    empty = tmp_path_factory.mktemp("no-pg-bin")
    monkeypatch.setattr(team, "_pg_bin", lambda: empty)
    with pytest.raises(servers.ServerError, match=r"initdb.*make setup"):
        servers.start_remote(ws)
    assert_nothing_left(ws / "remote")


@pytest.mark.slow
def test_postgres_failing_to_start_shows_its_log(ws):
    folder = ws / "remote"
    data = team._pg_data_dir(folder)
    (folder / "logs").mkdir(parents=True)
    team._pg_init(data, folder / "logs" / "postgres.log")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\nshared_buffers = 'plenty'\n")
    with pytest.raises(servers.ServerError) as err:
        servers.start_remote(ws)
    message = str(err.value)
    assert "postgres exited with code" in message
    assert "shared_buffers" in message  # PostgreSQL's own complaint, from the log's last lines
    assert_nothing_left(folder)  # the S3 store, started first, is stopped again


@pytest.mark.slow
def test_refused_bucket_is_a_clear_error(ws):
    with pytest.raises(servers.ServerError, match="refused to create bucket 'Bad_Bucket'") as err:
        servers.start_remote(ws, bucket="Bad_Bucket")
    assert "InvalidBucketName" in str(err.value)
    assert_nothing_left(ws / "remote")


# --------------------------------------------------------------------------- auth


@pytest.mark.slow
def test_auth_server_guards_writes_until_granted(ws):
    with servers.start_auth(ws) as stack:
        api = f"{stack.tracking_uri}/api/2.0/mlflow"
        password = servers.admin_password(stack)
        admin = ("admin", password)
        assert len(password) >= 12

        assert requests.get(f"{stack.tracking_uri}/health", timeout=10).status_code == 200
        search = f"{api}/experiments/search"
        assert requests.get(search, params={"max_results": 1}, timeout=10).status_code == 401
        wrong = ("admin", "not-the-password")
        assert requests.get(search, params={"max_results": 1}, auth=wrong).status_code == 401
        resp = requests.get(search, params={"max_results": 1}, auth=admin, timeout=10)
        assert resp.status_code == 200

        resp = requests.post(
            f"{api}/experiments/create", json={"name": "admins-experiment"}, auth=admin
        )
        assert resp.status_code == 200, resp.text
        exp_id = resp.json()["experiment_id"]

        servers.create_user(stack, "alice", "alice-password-123")
        servers.create_user(stack, "alice", "alice-password-456")  # again: new password
        alice = ("alice", "alice-password-456")
        assert requests.get(search, params={"max_results": 1}, auth=alice).status_code == 200
        write = {"experiment_id": exp_id, "start_time": int(time.time() * 1000)}
        rename = {"experiment_id": exp_id, "new_name": "alices-now"}
        assert requests.post(f"{api}/runs/create", json=write, auth=alice).status_code == 403
        assert requests.post(f"{api}/experiments/update", json=rename, auth=alice).status_code == (
            403
        )

        servers.grant(stack, exp_id, "alice", "EDIT")
        resp = requests.post(f"{api}/runs/create", json=write, auth=alice)
        assert resp.status_code == 200, resp.text
        servers.grant(stack, exp_id, "alice", "READ")  # a second grant updates the first
        assert requests.post(f"{api}/runs/create", json=write, auth=alice).status_code == 403

        assert password not in str(stack) and password not in repr(stack)
        for path in [*stack.folder.rglob("*.log"), core._state_file(stack.folder)]:
            assert password not in path.read_text(errors="replace"), path
        secrets_file = stack.folder / "secrets.json"
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- model serving


@pytest.mark.slow
def test_served_champion_predicts_like_the_model(local_stack, ws):
    import mlflow
    from sklearn.linear_model import LinearRegression

    uri = local_stack.tracking_uri
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    X, y = tiny_data()
    model = LinearRegression().fit(X, y)
    exp_id = client.create_experiment("test-serving")
    with mlflow.start_run(experiment_id=exp_id):
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    version = mlflow.register_model(info.model_uri, "served-model")
    client.set_registered_model_alias("served-model", "champion", version.version)

    query = X.iloc[[0, 2, 4]] + 1.5
    with servers.serve_model("models:/served-model@champion", tracking_uri=uri, workspace=ws) as s:
        assert s.setup == "serve" and s.info["model"] == "models:/served-model@champion"
        payload = {"dataframe_split": query.to_dict(orient="split")}
        payload["dataframe_split"].pop("index", None)
        resp = requests.post(s.info["invocations"], json=payload, timeout=30)
        assert resp.status_code == 200, resp.text
        predictions = resp.json()["predictions"]
        assert predictions == pytest.approx(list(model.predict(query)))
        procs = members(s)
    assert wait_gone(procs, 5) == []


# --------------------------------------------------------------------------- owners that die

OWNER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from mlflow_series import servers
    servers.PORTS.update(json.loads(sys.argv[3]))
    start = servers.start_local if sys.argv[1] == "local" else servers.start_remote
    stack = start(Path(sys.argv[2]))
    procs = [(p.pid, p.create_time()) for p in stack.processes]
    print(json.dumps({"pids": stack.pids, "procs": procs}), flush=True)
    time.sleep(600)
    """
)


def _start_owner(setup: str, ws: Path) -> tuple[subprocess.Popen, dict]:
    owner = subprocess.Popen(
        [PY, "-c", OWNER, setup, str(ws), json.dumps(fresh_ports())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = owner.stdout.readline()
    if not line:
        owner.kill()
        pytest.fail(f"the owner process failed: {owner.stderr.read()[-3000:]}")
    return owner, json.loads(line)


@pytest.mark.slow
@pytest.mark.parametrize("setup", ["local", "remote"])
def test_servers_die_with_their_owner(setup, ws):
    owner, started = _start_owner(setup, ws)
    try:
        procs = [tuple(p) for p in started["procs"]]
        assert len(procs) >= len(started["pids"])
        if setup == "remote":
            names = {psutil.Process(pid).name() for pid, _ in procs}
            assert "postgres" in names
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        killed_at = time.monotonic()
        left = wait_gone(procs, WATCHDOG_BOUND)
        assert left == [], f"still alive {time.monotonic() - killed_at:.1f} s later: {left}"
        assert groups_empty(list(started["pids"].values()))
        remaining = WATCHDOG_BOUND - (time.monotonic() - killed_at)
        assert wait_missing(ws / setup / "state.json", remaining)  # cleaned by the watchdog
        deadline = killed_at + WATCHDOG_BOUND
        while watchdogs_of(ws / setup / "state.json") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watchdogs_of(ws / setup / "state.json") == []  # and the watchdog is done
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()


PARENT = textwrap.dedent(
    """
    import json, sys, time
    from jupyter_client import KernelManager
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    code = (
        "import json\\nfrom pathlib import Path\\nfrom mlflow_series import servers\\n"
        f"servers.PORTS.update({sys.argv[2]})\\n"
        f"stack = servers.start_local(Path({sys.argv[1]!r}))\\n"
        "print(json.dumps({'pids': stack.pids,"
        " 'procs': [(p.pid, p.create_time()) for p in stack.processes]}))\\n"
    )
    out = []
    reply = kc.execute_interactive(
        code, timeout=180,
        output_hook=lambda msg: out.append(msg["content"].get("text", "")),
    )
    if reply["content"]["status"] != "ok":
        print(json.dumps({"error": reply["content"]}), flush=True)
        km.shutdown_kernel(now=True)
        sys.exit(1)
    result = json.loads("".join(out).strip().splitlines()[-1])
    result["kernel"] = km.provisioner.process.pid
    print(json.dumps(result), flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
def test_servers_die_when_the_test_runner_of_their_kernel_is_killed(ws, tmp_path_factory):
    """A test runner (nbval) runs a kernel that starts a server; the runner is SIGKILLed."""
    runtime = tmp_path_factory.mktemp("jupyter-runtime")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime)}
    runner = subprocess.Popen(
        [PY, "-c", PARENT, str(ws), json.dumps(fresh_ports())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = runner.stdout.readline()
        assert line, runner.stderr.read()[-3000:]
        started = json.loads(line)
        assert "error" not in started, started
        kernel = psutil.Process(started["kernel"])
        procs = [tuple(p) for p in started["procs"]] + [(kernel.pid, kernel.create_time())]
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        left = wait_gone(procs, WATCHDOG_BOUND)
        assert left == [], f"still alive: {left} (kernel {kernel.pid})"
        assert groups_empty(list(started["pids"].values()))
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


# --------------------------------------------------------------------------- command line


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "mlflow_series.servers", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_command_line_up_status_down(ws):
    try:
        _command_line_up_status_down(ws)
    finally:
        servers.stop("local", ws / "cli")


def _command_line_up_status_down(ws: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != config.REMOTE_URI_VAR}
    env[config.WORKSPACE_VAR] = str(ws)
    port = free_port()
    up = _cli("up", "local", "--workspace", "cli", "--port", str(port), env=env)
    assert up.returncode == 0, up.stderr
    url = f"http://127.0.0.1:{port}"
    assert url in up.stdout
    # `up` returned; the server keeps running, detached (no owner, no watchdog)
    assert process._http_ok(f"{url}/health")
    state = json.loads((ws / "cli" / "local" / "state.json").read_text())
    assert state["owner"] is None
    assert watchdogs_of(ws / "cli" / "local" / "state.json") == []
    procs = [(p.pid, p.create_time()) for p in servers.group_members(state["pids"]["mlflow"])]
    assert procs

    status = _cli("status", "local", "--workspace", "cli", env=env)
    assert status.returncode == 0 and url in status.stdout

    down = _cli("down", "local", "--workspace", "cli", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert wait_gone(procs, 5) == []
    assert not process._http_ok(f"{url}/health")

    status = _cli("status", "local", "--workspace", "cli", env=env)
    assert status.returncode == 1 and "not running" in status.stdout
    down = _cli("down", "local", "--workspace", "cli", env=env)
    assert down.returncode == 0 and "not running" in down.stdout


def test_a_port_left_in_time_wait_counts_as_free():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()  # the server side closes first: its end stays in TIME_WAIT, as after a stop
    client.close()
    listener.close()
    assert servers.port_is_free(port)


def test_admin_password_refuses_a_server_it_did_not_start():
    external = servers.Stack("auth", Path("."), "http://example.invalid", "http://example.invalid")
    external.external = True
    with pytest.raises(servers.ServerError, match="MLFLOW_TRACKING_PASSWORD"):
        servers.admin_password(external)


def test_stop_all_stops_every_workspace_and_forgets_its_state(tmp_path):
    state = tmp_path / "02_x" / "local" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"setup": "local", "pids": {"mlflow": 2**22 + 7}}))
    assert servers.stop_all(tmp_path) == ["02_x/local"]
    assert not state.exists()
    assert servers.stop_all(tmp_path) == []
