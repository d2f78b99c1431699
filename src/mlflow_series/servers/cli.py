"""python -m mlflow_series.servers up|down|status|upgrade SETUP: the servers from the shell."""

from __future__ import annotations

import argparse
import sys

from mlflow_series import config
from mlflow_series.servers.auth import start_auth
from mlflow_series.servers.core import PORTS, running, stop
from mlflow_series.servers.hosts import ALLOWED_HOSTS_VAR
from mlflow_series.servers.local import start_local, start_ui
from mlflow_series.servers.process import ServerError
from mlflow_series.servers.team import start_remote
from mlflow_series.servers.upgrade import UPGRADABLE, NothingToUpgrade, upgrade
from mlflow_series.servers.workspace import reset, stop_all

START = {"local": start_local, "remote": start_remote, "auth": start_auth, "ui": start_ui}


def main(argv: list[str] | None = None) -> int:
    """python -m mlflow_series.servers up|down|status SETUP [--workspace NAME], down all, or
    upgrade local|remote|all (the kept stores, to the installed MLflow's schema)."""
    parser = argparse.ArgumentParser(
        prog="python -m mlflow_series.servers",
        description="Start, stop or check the MLflow servers of the notebook series.",
    )
    parser.add_argument("action", choices=["up", "down", "status", "upgrade"])
    parser.add_argument(
        "setup",
        choices=["local", "remote", "auth", "ui", "all"],
        help="all: with down or upgrade; upgrade: local, remote or all",
    )
    parser.add_argument("--workspace", help="workspace folder name (default: the setup's notebook)")
    parser.add_argument("--port", type=int, help="port of the tracking server")
    parser.add_argument(
        "--allowed-hosts",
        default="",
        help="extra host names the server accepts, comma-separated (e.g. mlflow.example.com); "
        f"also read from {ALLOWED_HOSTS_VAR}",
    )
    parser.add_argument("--reset", action="store_true", help="with down: delete the setup's data")
    args = parser.parse_args(argv)
    if args.setup == "all" and args.action not in ("down", "upgrade"):
        parser.error(
            "`all` works with down and upgrade only: python -m mlflow_series.servers down all"
        )
    if args.action == "upgrade" and args.setup not in (*UPGRADABLE, "all"):
        parser.error(f"upgrade works on the stores that are kept: {', '.join(UPGRADABLE)} or all")
    try:
        if args.action == "upgrade":
            return _upgrade(args.setup, args.workspace)
        if args.setup == "all":
            stopped = stop_all()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.action == "up":
            kwargs: dict = {"port": args.port} if args.port else {}
            kwargs["allowed_hosts"] = [h for h in args.allowed_hosts.split(",") if h.strip()]
            stack = START[args.setup](args.workspace, watch=False, **kwargs)
            print(stack)
            if not stack.external and stack.ports.get("mlflow") not in (None, PORTS[args.setup]):
                print(f"  (port {PORTS[args.setup]} was busy, so another was chosen)")
        elif args.action == "down":
            if config.remote_tracking_uri():
                print(f"Nothing to stop: the series uses {config.remote_tracking_uri()}.")
                return 0
            if args.reset:
                reset(args.setup, args.workspace)
                print(f"{args.setup}: stopped and its data deleted")
            else:
                print(
                    f"{args.setup}: "
                    + ("stopped" if stop(args.setup, args.workspace) else "not running")
                )
        else:
            stack = running(args.setup, args.workspace)
            print(stack if stack else f"{args.setup}: not running")
            return 0 if stack else 1
    except (ServerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _upgrade(setup: str, workspace: str | None) -> int:
    """Upgrade one kept store, or each of local and remote that has one (`all`)."""
    if config.remote_tracking_uri():
        print(f"Nothing to upgrade here: the series uses {config.remote_tracking_uri()}.")
        return 0
    setups = UPGRADABLE if setup == "all" else (setup,)
    upgraded = 0
    for name in setups:
        try:
            print(upgrade(name, workspace))
            upgraded += 1
        except NothingToUpgrade as exc:
            if setup != "all":
                raise
            print(exc)
    if not upgraded:
        print("error: no kept store found, so nothing was upgraded.", file=sys.stderr)
        return 2
    return 0
