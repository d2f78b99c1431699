"""Processes that hold files of a workspace: found before a workspace is deleted.

A process that has a workspace's SQLite database open (an `mlflow ui` started from a terminal, a
server started by hand, a script) keeps serving the deleted file after the workspace is emptied:
new runs never appear in it and old artifacts answer 404, silently. So before deleting,
:func:`mlflow_series.servers.fresh_workspace` looks for such processes: the series' own ones
(marked by :data:`SERIES_MARK` in their environment) are stopped, any other is named with the
command that stops it, and nothing is deleted.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlflow_series.servers.process import SERIES_MARK, display_path, stop_group

import psutil

#: How a process uses a folder when only its working directory lies inside (it serves no file).
WORKING_DIRECTORY = "working directory inside it"


@dataclass(frozen=True)
class Holder:
    """One process that uses a workspace: its pid, command line and how it uses the folder."""

    pid: int
    command: str
    how: str
    series: bool

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.how}): {self.command}"


def _inside(path: str | None, root: str) -> bool:
    """True if path is root or lies under it (a sibling such as root + '_old' is not)."""
    return bool(path) and (path == root or path.startswith(root + os.sep))


def _mentions(args: list[str], root: str) -> bool:
    """True if a command-line argument names root or a path under it (also inside a URI)."""
    for arg in args:
        start = arg.find(root)
        while start != -1:
            end = start + len(root)
            if end == len(arg) or arg[end] in (os.sep, "'", '"', "?", "&", ","):
                return True
            start = arg.find(root, start + 1)
    return False


def _how(proc: psutil.Process, root: str) -> str | None:
    """How a process uses the folder (working directory, command line, open file), or None."""
    with contextlib.suppress(psutil.Error):
        if _inside(proc.cwd(), root):
            return WORKING_DIRECTORY
    with contextlib.suppress(psutil.Error):
        if _mentions(proc.cmdline(), root):
            return "names it on its command line"
    with contextlib.suppress(psutil.Error):
        for handle in proc.open_files():
            if _inside(handle.path, root):
                return f"has {display_path(handle.path)} open"
    return None


def _is_series(proc: psutil.Process) -> bool:
    """True if the series' helpers started the process or one of its ancestors (the environment
    carries the mark). Ancestors count because some servers overwrite their own environment area:
    PostgreSQL's children reuse it for their process titles ("postgres: checkpointer")."""
    with contextlib.suppress(psutil.Error):
        for each in (proc, *proc.parents()):
            with contextlib.suppress(psutil.Error):
                if each.environ().get(SERIES_MARK) == "1":
                    return True
    return False


def find_holders(folder: Path, series: Iterable[int] = ()) -> list[Holder]:
    """Every process but this one (and its ancestors) that uses `folder`, sorted by pid.

    Args:
        series: pids known to be the series' (e.g. recorded in a setup's state file): they and
            their children count as the series' whatever their environment shows.

    Processes this user may not inspect are skipped (on macOS, other users' processes).
    """
    known = set(series)
    root = str(Path(folder).resolve())
    me = psutil.Process()
    skip = {me.pid, *(parent.pid for parent in me.parents())}
    holders = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        how = _how(proc, root)
        if how is None:
            continue
        with contextlib.suppress(psutil.Error):
            command = shlex.join(proc.cmdline()) or proc.name()
            ours = bool(known & {proc.pid, *(parent.pid for parent in proc.parents())})
            holders.append(Holder(proc.pid, command, how, ours or _is_series(proc)))
    return sorted(holders, key=lambda holder: holder.pid)


def release(folder: Path) -> list[Holder]:
    """Stop the series' processes that use `folder`; return the others, which are left running."""
    others = []
    for holder in find_holders(folder):
        if not holder.series:
            others.append(holder)
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            stop_group(os.getpgid(holder.pid))
    return others
