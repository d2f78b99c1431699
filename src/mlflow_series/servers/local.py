"""The local tracking servers: SQLite backend store and an artifact folder.

- ``local`` (notebook 02): ``mlflow server`` with its own database and a proxied artifact folder.
- ``ui`` (notebook 01): ``mlflow ui`` on the database that MLflow created with no server, so the
  runs logged without a server can be browsed; started by the helpers, it stops when the kernel
  does, and :func:`mlflow_series.servers.fresh_workspace` stops it before emptying the folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlflow_series.servers.core import PORTS, Stack, _Launcher, _mlflow_server, _start
from mlflow_series.servers.process import ServerError, display_path, pick_port, server_env


def start_local(
    workspace: str | Path | None = None,
    port: int | None = None,
    watch: bool = True,
    allowed_hosts: Sequence[str] = (),
) -> Stack:
    """Start (or reuse) the local tracking server: SQLite backend store, proxied artifact folder."""

    def body(launcher: _Launcher, folder: Path) -> Stack:
        db, artifacts = folder / "mlflow.db", folder / "artifacts"
        args = ["--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(artifacts)]
        chosen = pick_port(port or PORTS["local"])
        url = _mlflow_server(launcher, args, server_env(), chosen, allowed_hosts)
        launcher.state["info"] = {
            "backend store": f"SQLite database {display_path(db)}",
            "artifacts": f"folder {display_path(artifacts)} (served through the server)",
        }
        return launcher.done(url, url, f"{url}/health")

    return _start("local", workspace, watch, body)


def start_ui(
    workspace: str | Path | None = None,
    port: int | None = None,
    watch: bool = True,
    allowed_hosts: Sequence[str] = (),
) -> Stack:
    """Start (or reuse) ``mlflow ui`` on the ``mlflow.db`` of a workspace (notebook 01's store).

    The runs keep their artifact locations (the ``mlruns/`` folder beside the database), so the UI
    shows their files too.

    Raises:
        ServerError: the workspace holds no mlflow.db yet (log a run first), or the UI fails to
            start (with the last lines of its log).
    """

    def body(launcher: _Launcher, folder: Path) -> Stack:
        db = folder.parent / "mlflow.db"
        if not db.is_file():
            raise ServerError(
                f"No MLflow database at {display_path(db)}: log a run without a server first "
                "(notebook 01, section 1), then start the UI."
            )
        args = ["--backend-store-uri", f"sqlite:///{db}"]
        chosen = pick_port(port or PORTS["ui"])
        # cwd: the artifact folder of experiments created from the UI lands in the setup's folder
        url = _mlflow_server(launcher, args, server_env(), chosen, allowed_hosts, "ui", cwd=folder)
        launcher.state["info"] = {"backend store": f"SQLite database {display_path(db)}"}
        return launcher.done(url, url, f"{url}/health")

    return _start("ui", workspace, watch, body)
