"""`make upgrade` and the refusal message, without real servers (the slow proof with stores of an
older MLflow release is tests/upgrade/, run by `make test-upgrade`)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import types
from pathlib import Path

from mlflow_series import config, servers
from mlflow_series.servers import cli, core, upgrade

import pytest

#: MLflow 2.22's schema revision: older than the pinned release's, and known to it.
OLDER = "0584bdc529eb"
#: What `mlflow server` logs when it refuses such a store (mlflow/store/db/utils.py).
REFUSAL = (
    "ERROR mlflow.cli: Detected out-of-date database schema (found version {found}, but expected "
    "{head}). Take a backup of your database, then run 'mlflow db upgrade <database_uri>' to "
    "migrate your database to the latest schema."
)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace root of this test's own."""
    monkeypatch.setenv(config.WORKSPACE_VAR, str(tmp_path))
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    return tmp_path


def refusal_log(tmp_path: Path, found: str) -> Path:
    log = tmp_path / "mlflow.log"
    log.write_text("--- start\n" + REFUSAL.format(found=found, head=upgrade.head_revision()) + "\n")
    return log


def test_a_refusal_names_make_upgrade_and_says_nothing_was_deleted(root):
    folder = root / "kept" / "local"
    error = upgrade.schema_refusal("local", folder, refusal_log(root, OLDER))
    message = str(error)
    assert "made by an older MLflow" in message
    assert f"the store has {OLDER}" in message
    assert "Nothing was deleted" in message
    assert "`make upgrade WORKSPACE=kept`" in message
    assert "`python -m mlflow_series.servers upgrade local --workspace kept`" in message
    assert message.endswith("then start again.")


def test_the_hint_follows_the_workspace(root):
    default = root / core.DEFAULT_WORKSPACES["remote"] / "remote"
    assert "run `make upgrade` (or `python -m mlflow_series.servers upgrade remote`)" in (
        upgrade.upgrade_hint("remote", default)
    )
    elsewhere = root.parent / "other-root" / "kept" / "local"
    hint = upgrade.upgrade_hint("local", elsewhere)
    assert f"`{config.WORKSPACE_VAR}={elsewhere.parent.parent} make upgrade WORKSPACE=kept`" in hint
    assert "mlflow db upgrade sqlite:///" in upgrade.upgrade_hint("auth", root / "x" / "auth")


def test_a_refusal_of_an_earlier_start_does_not_count(root):
    log = refusal_log(root, OLDER)
    offset = log.stat().st_size
    with open(log, "a") as out:
        out.write("--- start\nOSError: [Errno 98] Address already in use\n")
    assert upgrade.schema_refusal("local", root / "kept" / "local", log, offset) is None


def test_a_store_of_a_newer_mlflow_is_not_sent_to_make_upgrade(root):
    error = upgrade.schema_refusal("local", root / "kept" / "local", refusal_log(root, "0ff1ce"))
    assert "written by a newer MLflow" in str(error)
    assert "make upgrade" not in str(error)


@pytest.fixture
def fake_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`mlflow server` replaced by a script that prints `text` and exits 1 (no real server)."""

    def install(text: str) -> None:
        script = tmp_path / "fake-python"
        script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{text}\nEOF\nexit 1\n")
        script.chmod(0o755)
        monkeypatch.setattr(core, "sys", types.SimpleNamespace(executable=str(script)))

    return install


def test_starting_on_an_out_of_date_store_raises_the_clear_error(root, fake_mlflow):
    fake_mlflow(REFUSAL.format(found=OLDER, head=upgrade.head_revision()))
    with pytest.raises(servers.ServerError, match="made by an older MLflow") as refused:
        servers.start_local("kept", watch=False)
    assert "`make upgrade WORKSPACE=kept`" in str(refused.value)
    assert not (root / "kept" / "local" / "state.json").exists()
    # another failure later on: the plain error with its log, not the refusal of the first start
    fake_mlflow("OSError: something else")
    with pytest.raises(servers.ServerError, match="exited with code 1") as failed:
        servers.start_local("kept", watch=False)
    assert "make upgrade" not in str(failed.value)


def sqlite_store(path: Path, revision: str) -> Path:
    """A database holding only MLflow's revision record (enough for the checks before a backup)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    return path


def test_a_store_already_current_is_left_alone(root):
    sqlite_store(root / "kept" / "local" / "mlflow.db", upgrade.head_revision())
    report = upgrade.upgrade("local", "kept")
    assert report.backup is None and "is up to date" in str(report)
    assert not (root / "kept" / "local" / "backups").exists()


def test_a_store_of_a_newer_mlflow_is_refused_before_any_change(root):
    db = sqlite_store(root / "kept" / "local" / "mlflow.db", "0ff1ce")
    before = db.read_bytes()
    with pytest.raises(servers.ServerError, match="written by a newer MLflow"):
        upgrade.upgrade("local", "kept")
    assert db.read_bytes() == before
    assert not (root / "kept" / "local" / "backups").exists()


def test_a_missing_store_is_nothing_to_upgrade(root, capsys):
    with pytest.raises(upgrade.NothingToUpgrade, match="no database at"):
        upgrade.upgrade("local", "kept")
    assert cli.main(["upgrade", "all", "--workspace", "kept"]) == 2
    out, err = capsys.readouterr()
    assert "local: no database at" in out and "remote: no PostgreSQL data at" in out
    assert "nothing was upgraded" in err
    with pytest.raises(SystemExit):
        cli.main(["upgrade", "auth"])


def test_a_process_outside_the_series_using_the_store_stops_the_upgrade(root):
    db = sqlite_store(root / "kept" / "local" / "mlflow.db", OLDER)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=db.parent)
    try:
        with pytest.raises(servers.ServerError, match=f"pid {other.pid}") as refused:
            upgrade.upgrade("local", "kept")
        assert "Nothing was changed" in str(refused.value)
    finally:
        other.kill()
        other.wait()
    assert not (db.parent / "backups").exists()


def fake_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """`mlflow db upgrade` replaced by a Python script (argv[-1] is the database URI)."""
    script = tmp_path / "fake-mlflow"
    script.write_text(f"#!{sys.executable}\nimport sqlite3, sys\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr(upgrade, "sys", types.SimpleNamespace(executable=str(script)))


def test_a_failed_mlflow_upgrade_names_the_backup(root, tmp_path, monkeypatch):
    db = sqlite_store(root / "kept" / "local" / "mlflow.db", OLDER)
    fake_upgrade(tmp_path, monkeypatch, "print('migration 1234 failed: boom'); sys.exit(1)")
    with pytest.raises(servers.ServerError, match="`mlflow db upgrade` failed") as failed:
        upgrade.upgrade("local", "kept")
    (backup,) = (db.parent / "backups").iterdir()
    assert servers.display_path(backup) in str(failed.value)
    assert "migration 1234 failed: boom" in str(failed.value)
    assert upgrade.store_revision(f"sqlite:///{backup}") == OLDER


def test_an_upgrade_that_loses_rows_is_reported(root, tmp_path, monkeypatch):
    db = sqlite_store(root / "kept" / "local" / "mlflow.db", OLDER)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE runs (run_uuid VARCHAR(32))")
        conn.executemany("INSERT INTO runs VALUES (?)", [("a",), ("b",)])
    body = (
        "conn = sqlite3.connect(sys.argv[-1].removeprefix('sqlite:///'))\n"
        f"conn.execute(\"UPDATE alembic_version SET version_num = '{upgrade.head_revision()}'\")\n"
        "conn.execute(\"DELETE FROM runs WHERE run_uuid = 'b'\")\n"
        "conn.commit()"
    )
    fake_upgrade(tmp_path, monkeypatch, body)
    with pytest.raises(servers.ServerError, match=r"'runs': \(2, 1\)") as lost:
        upgrade.upgrade("local", "kept")
    assert "restore the backup" in str(lost.value)
