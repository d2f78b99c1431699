"""Workspaces: start a notebook from an empty one, reset a setup, stop everything."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from mlflow_series import config
from mlflow_series.servers.core import SETUPS, _folder, _read_json, stop
from mlflow_series.servers.holders import WORKING_DIRECTORY, find_holders, release
from mlflow_series.servers.process import ServerError, display_path, group_members
from mlflow_series.servers.team import _pg_data_dir

import psutil


def _alive(pid: int) -> list[psutil.Process]:
    """The process with this pid, if it runs."""
    with contextlib.suppress(psutil.Error):
        return [psutil.Process(pid)]
    return []


def _refuse_foreign_holders(folder: Path) -> None:
    """Raise, before anything is deleted, if a process the series did not start uses `folder`.

    Raises:
        ServerError: naming each such process and how to stop it.
    """
    # A process whose working directory is inside (a terminal `cd`-ed there) serves nothing.
    recorded = [  # the processes the setups' state files record, and their process groups
        member.pid
        for state_file in [*folder.glob("state.json"), *folder.glob("*/state.json")]
        for pid in (_read_json(state_file) or {}).get("pids", {}).values()
        for member in [*group_members(pid), *_alive(pid)]
    ]
    holders = find_holders(folder, recorded)
    others = [h for h in holders if not h.series and h.how != WORKING_DIRECTORY]
    if others:
        listing = "\n".join(f"  {holder}" for holder in others)
        pids = " ".join(str(holder.pid) for holder in others)
        raise ServerError(
            f"{display_path(folder)} is in use by a process the series did not start:\n{listing}\n"
            "Emptying the folder now would leave it serving deleted files (no new runs, missing "
            f"artifacts). Nothing was deleted. Stop it (Ctrl+C in its terminal, or `kill {pids}`), "
            "then run this cell again."
        )


def _stop_setup(setup_folder: Path) -> None:
    """Stop the setup kept in `setup_folder` (its state file, if any) and delete PostgreSQL's
    data when it lives outside the folder (as root, in a private temporary folder)."""
    if (setup_folder / "state.json").exists():
        stop(setup_folder.name, setup_folder.parent)
    pg = _pg_data_dir(setup_folder)
    if pg.parent.name.startswith("mlflow-series-pg-") and pg.parent.exists():
        shutil.rmtree(pg.parent)


def _delete(folder: Path) -> None:
    """Stop the series' processes still using `folder` (e.g. a server whose state file was
    lost), then delete it."""
    release(folder)
    if folder.exists():
        shutil.rmtree(folder)


def reset(setup: str, workspace: str | Path | None = None) -> None:
    """Stop a setup and delete its folder: every run, model and artifact it kept.

    Raises:
        ServerError: a process the series did not start uses the folder (nothing is deleted).
    """
    folder = _folder(workspace, setup)
    _refuse_foreign_holders(folder)
    _stop_setup(folder)
    _delete(folder)


def fresh_workspace(name: str) -> Path:
    """A notebook's workspace emptied for a reproducible run: its servers stopped, its files gone.

    Processes the series started that still use the folder (servers, an `mlflow ui`) are
    stopped first. Only this local folder is emptied: with MLFLOW_SERIES_TRACKING_URI set, nothing
    on that server is touched (notebook 01's local store, downloads and scripts are still local).

    Raises:
        ServerError: a process the series did not start uses the folder, e.g. an `mlflow ui` run
            from a terminal on its database (nothing is deleted; the message names the process).
    """
    folder = config.workspace(name)
    _refuse_foreign_holders(folder)
    for setup in SETUPS:
        _stop_setup(folder / setup)
    _delete(folder)
    folder.mkdir(parents=True)
    return folder


def stop_all(root: Path | None = None) -> list[str]:
    """Stop every setup of every workspace under the workspace root; returns what was stopped."""
    root = root or config.workspace_root()
    stopped = []
    for state_file in sorted(root.glob("*/*/state.json")):
        setup, workspace = state_file.parent.name, state_file.parent.parent
        if setup in SETUPS and stop(setup, workspace):
            stopped.append(f"{workspace.name}/{setup}")
    return stopped
