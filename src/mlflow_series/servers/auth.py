"""A tracking server with MLflow's basic-auth app, its users and permissions."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow_series.servers.core import (
    PORTS,
    Stack,
    _Launcher,
    _mlflow_server,
    _read_json,
    _start,
    _write_json,
)
from mlflow_series.servers.process import ServerError, display_path, pick_port, server_env

import requests


def _auth_secrets(folder: Path) -> dict[str, str]:
    """The admin password and Flask secret of one auth workspace, generated on first use."""
    path = folder / "secrets.json"
    data = _read_json(path)
    if data is None:
        data = {"admin_password": secrets.token_urlsafe(18), "secret_key": secrets.token_hex(32)}
        _write_json(path, data, private=True)
    return data


def start_auth(
    workspace: str | Path | None = None,
    port: int | None = None,
    watch: bool = True,
    allowed_hosts: Sequence[str] = (),
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
        # cwd: basic_auth.db lands in the setup's folder
        url = _mlflow_server(launcher, args, env, chosen, allowed_hosts, cwd=folder)
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
