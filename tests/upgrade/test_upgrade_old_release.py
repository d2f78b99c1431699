"""Stores written by an older MLflow release keep everything through `make upgrade`.

Run by `make test-upgrade` (a few minutes). For the local store (SQLite + artifact folder) and the
team stack (PostgreSQL + S3 store), each test:

1. starts the setup with the series' own helpers, but with the older release's `mlflow server`
   (only the Python that runs the server is swapped), and fills it with the older release's own
   client (old_release_store.py: runs, metrics, params, tags, artifacts, a registered model
   version with an alias). Through a server rather than the database file directly, so the store
   is exactly what `make server` / `make remote-up` kept under an older pin: proxied artifacts
   (mlflow-artifacts:/ locations), PostgreSQL and the S3 store included;
2. starts the setup with the pinned MLflow, whose "create missing tables and migrate" shortcut is
   switched off (no_auto_migration/): it refuses the store, as a release whose migrations only
   change existing tables does. The error names `make upgrade`, nothing runs afterwards and the
   data is all there (checked in step 4);
3. runs `make upgrade WORKSPACE=...`: revisions before and after, a backup at the old revision;
4. starts the setup with the pinned MLflow (shortcut still off: the schema is now current) and
   finds every run, metric step, param, tag, artifact and the model version through its alias,
   then logs a new run; `make upgrade` again stops the running setup and finds it up to date.

Nothing may be left running after a test (checked with psutil).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

from mlflow_series import config, servers
from mlflow_series.servers import core, team, upgrade
from mlflow_series.servers.hosts import ALLOWED_HOSTS_VAR

import psutil
import pytest

HERE = Path(__file__).parent
WRITER = HERE / "old_release_store.py"
OLD_REVISION = "0584bdc529eb"  # the schema of MLflow 2.22.5 (old-mlflow.txt)
WORKSPACE = "kept"


def free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


#: Set to a value of each test's own in its environment, so every process it starts carries it.
TAG = "MLFLOW_SERIES_UPGRADE_TEST"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A workspace root of this test's own, off the default ports; stopped and removed after."""
    path = tmp_path / "workspaces"
    path.mkdir()
    monkeypatch.setenv(config.WORKSPACE_VAR, str(path))
    monkeypatch.setenv(TAG, str(path))
    for name in (config.REMOTE_URI_VAR, "MLFLOW_TRACKING_URI", ALLOWED_HOSTS_VAR, "CODESPACES"):
        monkeypatch.delenv(name, raising=False)
    taken: set[int] = set()
    for key in servers.PORTS:
        taken.add(port := free_port(taken))
        monkeypatch.setitem(servers.PORTS, key, port)
    yield path
    for setup in servers.SETUPS:
        with contextlib.suppress(Exception):
            servers.stop(setup, path / WORKSPACE)
    pg = team._pg_data_dir(path / WORKSPACE / "remote").parent
    if pg.name.startswith("mlflow-series-pg-"):
        shutil.rmtree(pg, ignore_errors=True)


def leftovers(root: Path) -> list[str]:
    """Processes (not this one nor its parents) started by this test (they carry its TAG in
    their environment: servers, their workers, PostgreSQL's children) or using its workspace."""
    me = psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    paths = [str(root), str(team._pg_data_dir(root / WORKSPACE / "remote").parent)]
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        if proc.pid in skip or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(TAG) == str(root) or any(p in text for p in paths):
                found.append(f"{proc.pid}: {text[:200]}")
    return found


def assert_nothing_running(root: Path) -> None:
    deadline = time.monotonic() + 10  # stop() waits for the groups; allow stragglers a moment
    while (left := leftovers(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "left running:\n" + "\n".join(left)


@contextlib.contextmanager
def older_server(monkeypatch: pytest.MonkeyPatch, old_python: Path) -> Iterator[None]:
    """Within: the helpers run `mlflow server` with the older release's python."""
    with monkeypatch.context() as patch:
        patch.setattr(core, "sys", types.SimpleNamespace(executable=str(old_python)))
        yield


def fill_with_older_release(
    start: Callable, old_python: Path, tmp_path: Path, version: str
) -> dict:
    """Start the setup with the older `mlflow server`, log with the older client, stop."""
    stack = start(WORKSPACE, watch=False)
    try:
        manifest = tmp_path / "manifest.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(config.QUIET_ENV)
        cmd = [str(old_python), str(WRITER), stack.tracking_uri, str(manifest)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        stack.stop()
    written = json.loads(manifest.read_text())
    assert written["mlflow_version"] == version  # the older release wrote it, not the pin
    return written


def make_upgrade(root: Path) -> str:
    """`make upgrade WORKSPACE=kept`, as a person runs it; returns what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env[config.WORKSPACE_VAR] = str(root)
    cmd = ["make", "-s", "upgrade", f"WORKSPACE={WORKSPACE}"]
    result = subprocess.run(
        cmd, cwd=config.REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def check_everything(tracking_uri: str, written: dict, tmp_path: Path) -> None:
    """Every run, metric step, param, tag, artifact and the model version, as the older
    release wrote them, seen through the pinned MLflow's server (MLFLOW_TRACKING_URI names it,
    so that the registry is the server's too)."""
    import mlflow
    from mlflow import MlflowClient

    assert os.environ["MLFLOW_TRACKING_URI"] == tracking_uri  # for models:/ below
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(written["experiment"])
    assert experiment.experiment_id == written["experiment_id"]
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert {run.info.run_id for run in runs} == set(written["runs"])
    for run in runs:
        expected = written["runs"][run.info.run_id]
        assert run.info.run_name == expected["name"]
        assert run.data.params == expected["params"]
        assert run.data.tags["kind"] == "upgrade-check"
        history = client.get_metric_history(run.info.run_id, "rmse")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == list(
            enumerate(expected["rmse"])
        )
        path = client.download_artifacts(run.info.run_id, "notes/readme.txt", str(tmp_path))
        assert Path(path).read_text() == expected["artifact"]
    model = client.get_registered_model(written["model"])
    assert model.description == "written by the older release"
    version = client.get_model_version_by_alias(written["model"], "champion")
    assert (version.version, version.run_id) == (written["version"], written["version_run_id"])
    assert version.tags == {"origin": "older-release"}
    uri = f"models:/{written['model']}@champion"
    folder = mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "model"))
    assert (Path(folder) / "readme.txt").read_text() == "notes of run 0\n"
    new = client.create_run(experiment.experiment_id, run_name="after-upgrade")
    client.log_metric(new.info.run_id, "rmse", 0.5)
    client.set_terminated(new.info.run_id)


SETUPS = {"local": servers.start_local, "remote": servers.start_remote}


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("setup", list(SETUPS))
def test_store_of_an_older_release_keeps_everything_through_make_upgrade(
    setup, root, old_python, old_version, monkeypatch, tmp_path
):
    start, folder = SETUPS[setup], root / WORKSPACE / setup
    with older_server(monkeypatch, old_python):
        written = fill_with_older_release(start, old_python, tmp_path, old_version)
    assert_nothing_running(root)

    # 2. the pinned server refuses the store (as a release that only changes tables does)
    monkeypatch.setenv("PYTHONPATH", str(HERE / "no_auto_migration"))
    with pytest.raises(servers.ServerError) as refused:
        start(WORKSPACE, watch=False)
    message = str(refused.value)
    assert "made by an older MLflow" in message
    assert f"the store has {OLD_REVISION}" in message
    assert "Nothing was deleted" in message
    assert f"`make upgrade WORKSPACE={WORKSPACE}`" in message
    assert f"--workspace {WORKSPACE}" in message
    assert "then start again" in message
    assert_nothing_running(root)
    assert not (folder / "state.json").exists()

    # 3. make upgrade: backup first, revisions before and after
    head = upgrade.head_revision()
    printed = make_upgrade(root)
    assert f"schema revision: {OLD_REVISION} -> {head}" in printed, printed
    assert "3 runs" in printed and "1 model_versions" in printed, printed
    assert "artifacts: untouched" in printed, printed
    backups = list((folder / "backups").iterdir())
    assert len(backups) == 1 and backups[0].name.endswith(f"-{OLD_REVISION}" + backups[0].suffix)
    assert servers.display_path(backups[0]) in printed
    check_backup(setup, backups[0])
    assert_nothing_running(root)

    # 4. the pinned server starts on the upgraded store and shows everything
    stack = start(WORKSPACE, watch=False)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.tracking_uri)
        check_everything(stack.tracking_uri, written, tmp_path)
        if setup == "remote":  # the artifacts live in the S3 store, as before
            listing = servers.s3_client(stack).list_objects_v2(Bucket=servers.BUCKET)
            assert sum(k["Key"].endswith("notes/readme.txt") for k in listing["Contents"]) == 3
        again = make_upgrade(root)  # stops the running setup, finds it up to date
    finally:
        stack.stop()
    assert f"is up to date (schema revision {head})" in again, again
    assert "its servers were running: stopped" in again, again
    assert len(list((folder / "backups").iterdir())) == 1  # no backup when nothing changes
    assert_nothing_running(root)


def check_backup(setup: str, backup: Path) -> None:
    """The backup holds the store as it was before the upgrade (the older revision)."""
    if setup == "local":
        assert upgrade.store_revision(f"sqlite:///{backup}") == OLD_REVISION
        assert upgrade.row_counts(f"sqlite:///{backup}")["runs"] == 3
        return
    pg_restore = team._pg_bin() / "pg_restore"
    listing = subprocess.run(
        [str(pg_restore), "--list", str(backup)], capture_output=True, text=True, check=True
    ).stdout
    assert "TABLE DATA public runs" in listing and "TABLE DATA public alembic_version" in listing
    sql = subprocess.run(
        [str(pg_restore), "--data-only", "--table=alembic_version", "--file=-", str(backup)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert OLD_REVISION in sql
