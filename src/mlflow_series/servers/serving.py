"""Model serving with `mlflow models serve`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mlflow_series import config
from mlflow_series.servers.core import PORTS, Stack, _Launcher, _start, running
from mlflow_series.servers.process import HOST, _http_ok, pick_port, server_env


def model_server_env(tracking_uri: str) -> dict[str, str]:
    """The environment of a model server that fetches its model from `tracking_uri`.

    :func:`server_env` strips every MLFLOW_TRACKING_* variable, so that the series' own servers
    never receive a login meant for another server. When `tracking_uri` is the real server named
    by MLFLOW_SERIES_TRACKING_URI, the model server is one more client of it and gets this
    process's MLFLOW_TRACKING_* settings (MLFLOW_TRACKING_USERNAME / _PASSWORD for basic auth,
    _TOKEN, TLS settings); without them a server with basic auth answers 401 and the model
    server exits before it serves.
    """
    extra = {"MLFLOW_TRACKING_URI": tracking_uri}
    remote = config.remote_tracking_uri()
    if remote is not None and remote.rstrip("/") == tracking_uri.rstrip("/"):
        client = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_TRACKING_")}
        extra = client | extra
    return server_env(extra)


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
        env = model_server_env(tracking_uri)
        cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
        cmd += ["--env-manager", "local", "-h", HOST, "-p", str(chosen), "-w", "1"]
        proc = launcher.spawn("serve", cmd, env)
        launcher.state["ports"]["serve"] = chosen
        url = f"http://{HOST}:{chosen}"
        launcher.wait_ready("serve", proc, lambda: _http_ok(f"{url}/ping"))
        launcher.state["info"] = {"model": model_uri, "invocations": f"{url}/invocations"}
        return launcher.done(tracking_uri, url, f"{url}/ping")

    return _start("serve", workspace, watch, body)
