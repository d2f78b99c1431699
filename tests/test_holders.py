"""A fresh workspace never leaves a process serving deleted files.

The case: notebook 01's `mlflow ui` on its `mlflow.db`, then Restart & Run All. Emptying the
workspace under the UI left it serving the deleted database (new runs never appeared, old
artifacts answered 404) and nothing said so. Now the series' own processes are stopped first, and
any other process is named, with how to stop it, before anything is deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow_series import config, servers
from mlflow_series.servers import holders, process

import psutil
import pytest
import requests
from test_servers import cleanup_workspace, fresh_ports, wait_gone

PY = sys.executable


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A workspace root of its own, on free ports, with no remote server."""
    monkeypatch.setenv(config.WORKSPACE_VAR, str(tmp_path / "workspace"))
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    for key, port in fresh_ports().items():
        monkeypatch.setitem(servers.PORTS, key, port)
    yield tmp_path / "workspace"
    for folder in (tmp_path / "workspace").glob("*"):
        cleanup_workspace(folder)


def make_store(folder: Path) -> None:
    """An mlflow.db with one run, as notebook 01 leaves it (MLflow's default local store)."""
    script = (
        "import mlflow\nwith mlflow.start_run(run_name='first'):\n    mlflow.log_metric('m', 1)\n"
    )
    env = {**os.environ, **config.QUIET_ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run([PY, "-c", script], cwd=folder, env=env, check=True, capture_output=True)
    assert (folder / "mlflow.db").is_file()


def foreign(cmd: list[str], cwd: Path) -> subprocess.Popen:
    """A process started outside the helpers (no series mark in its environment)."""
    env = {k: v for k, v in os.environ.items() if k != process.SERIES_MARK}
    env.update(config.QUIET_ENV, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # stopped as a group, workers included
    )


def wait_until(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


# --------------------------------------------------------------------------- unit tests


def test_a_sibling_folder_or_a_longer_name_is_not_inside():
    root = "/w/01_local"
    assert holders._inside("/w/01_local", root)
    assert holders._inside("/w/01_local/mlflow.db", root)
    assert not holders._inside("/w/01_local_old/mlflow.db", root)
    assert holders._mentions(["--backend-store-uri", "sqlite:////w/01_local/mlflow.db"], root)
    assert holders._mentions(["--x=/w/01_local"], root)
    assert not holders._mentions(["sqlite:////w/01_local_old/mlflow.db"], root)


HOLD_OPEN = (
    "import sqlite3, sys, time\n"
    "connection = sqlite3.connect(sys.stdin.readline().strip())\n"
    "connection.execute('select count(*) from runs')\n"
    "print('ok', flush=True)\n"
    "time.sleep(120)\n"
)


def test_a_process_holding_a_file_open_is_named_and_nothing_is_deleted(root):
    folder = config.workspace("01_x")
    make_store(folder)
    # The path goes in on stdin and the working directory is elsewhere: only the open file
    # gives the process away.
    holder = subprocess.Popen(
        [PY, "-c", HOLD_OPEN],
        cwd=root.parent,
        env={k: v for k, v in os.environ.items() if k != process.SERIES_MARK},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdin.write(f"{folder / 'mlflow.db'}\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "ok"
        found = servers.find_holders(folder)
        assert [h.pid for h in found] == [holder.pid]
        assert found[0].how.endswith("mlflow.db open") and not found[0].series
        with pytest.raises(servers.ServerError, match=rf"pid {holder.pid}(.|\n)*kill {holder.pid}"):
            servers.fresh_workspace("01_x")
        assert (folder / "mlflow.db").is_file()  # nothing was deleted
        assert holder.poll() is None  # and the other process was left alone
    finally:
        holder.kill()
        holder.wait()
    assert servers.fresh_workspace("01_x") == folder
    assert list(folder.iterdir()) == []


def test_a_series_process_without_a_state_file_is_stopped(root):
    """E.g. a server whose state file was lost: the series' mark tells it is ours to stop."""
    folder = config.workspace("03_x")
    store = subprocess.Popen(
        [
            PY,
            "-m",
            "mlflow_series.s3store",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data",
            str(folder / "s3"),
        ],
        env=process.server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: any(h.pid == store.pid for h in servers.find_holders(folder)), 20)
        servers.fresh_workspace("03_x")
        assert store.wait(timeout=10) is not None
        assert list(folder.iterdir()) == []
    finally:
        if store.poll() is None:
            store.kill()


@pytest.mark.slow
def test_restart_and_run_all_with_a_terminal_ui_open_names_it(root):
    """The issue's case: `mlflow ui` from a terminal on notebook 01's database."""
    folder = config.workspace("01_local_tracking")
    make_store(folder)
    port = servers.PORTS["ui"]
    ui = foreign(
        [
            PY,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            f"sqlite:///{folder}/mlflow.db",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root.parent,
    )
    try:
        wait_until(lambda: process._http_ok(f"http://127.0.0.1:{port}/health"), 90)
        with pytest.raises(servers.ServerError) as info:
            servers.fresh_workspace("01_local_tracking")
        message = str(info.value)
        assert f"pid {ui.pid}" in message and "mlflow ui" in message
        assert "Nothing was deleted" in message and f"kill {ui.pid}" in message
        assert (folder / "mlflow.db").is_file()
    finally:
        servers.stop_group(ui.pid)


@pytest.mark.slow
def test_the_ui_started_by_the_helpers_is_stopped_by_a_fresh_workspace(root):
    folder = config.workspace("01_local_tracking")
    make_store(folder)
    ui = servers.start_ui("01_local_tracking")
    assert ui.folder == folder / "ui"
    runs = requests.post(
        f"{ui.tracking_uri}/api/2.0/mlflow/runs/search", json={"experiment_ids": ["0"]}, timeout=10
    ).json()["runs"]
    assert [r["info"]["run_name"] for r in runs] == ["first"]
    procs = [(p.pid, p.create_time()) for p in ui.processes]
    assert servers.fresh_workspace("01_local_tracking") == folder
    assert wait_gone(procs, 5) == []
    assert list(folder.iterdir()) == []
    assert not any(
        str(folder) in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
    )


def test_the_ui_needs_a_database_first(root):
    config.workspace("01_local_tracking")
    with pytest.raises(servers.ServerError, match="No MLflow database"):
        servers.start_ui("01_local_tracking")


def test_a_real_server_leaves_the_local_workspace_emptied_all_the_same(root, monkeypatch):
    """Notebook 01 always logs locally: with a real server named, its old runs must still go."""
    folder = config.workspace("01_local_tracking")
    make_store(folder)
    monkeypatch.setenv(config.REMOTE_URI_VAR, "https://mlflow.example.com")
    assert servers.fresh_workspace("01_local_tracking") == folder
    assert list(folder.iterdir()) == []


def test_the_ui_is_local_even_with_a_real_server_named(root, monkeypatch):
    config.workspace("01_local_tracking")
    monkeypatch.setenv(config.REMOTE_URI_VAR, "http://127.0.0.1:9")  # would not answer
    with pytest.raises(servers.ServerError, match="No MLflow database"):
        servers.start_ui("01_local_tracking")


def test_reset_stops_what_the_setups_state_records(root):
    """reset() stops the recorded processes in order, not only the ones found holding files."""
    ws = config.workspace("02_x")
    folder = ws / "serve"
    (folder / "logs").mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True, cwd=root.parent)
    state = {
        "setup": "serve",
        "pids": {"serve": sleeper.pid},
        "create_times": {"serve": psutil.Process(sleeper.pid).create_time()},
        "ports": {},
        "logs": {},
        "info": {},
        "ready": True,
        "owner": None,
    }
    (folder / "state.json").write_text(json.dumps(state))
    try:
        servers.reset("serve", ws)
        assert sleeper.wait(timeout=10) is not None
        assert not folder.exists()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


def test_a_shell_whose_working_directory_is_inside_does_not_block(root):
    """Only processes that serve or hold files block; a terminal `cd`-ed into the folder does
    not (deleting the folder under it is harmless)."""
    folder = config.workspace("01_y")
    shell = foreign(["sleep", "60"], cwd=folder)
    try:
        assert [h.pid for h in servers.find_holders(folder)] == [shell.pid]
        assert servers.fresh_workspace("01_y") == folder
        assert shell.poll() is None  # left alone
    finally:
        shell.kill()
        shell.wait()


@pytest.mark.slow
def test_a_running_team_stack_is_the_series_own_even_where_postgres_rewrites_its_environment(
    root,
):
    """PostgreSQL's children reuse their environment area for their titles: they are still the
    series' processes: for `make remote-up` then a notebook, and for `remote-down RESET=1`."""
    ws = config.workspace("03_z")
    stack = servers.start_remote(ws, watch=False)  # as `make remote-up` does
    procs = [(p.pid, p.create_time()) for p in stack.processes]
    assert len(procs) > 3
    assert all(h.series for h in holders.find_holders(ws))
    servers.fresh_workspace("03_z")
    assert wait_gone(procs, 5) == []
    stack = servers.start_remote(ws, watch=False)
    procs = [(p.pid, p.create_time()) for p in stack.processes]
    servers.reset("remote", ws)
    assert wait_gone(procs, 5) == []
    assert not (ws / "remote").exists()
