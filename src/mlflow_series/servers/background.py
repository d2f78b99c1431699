"""Start a setup in the background: the notebook goes on while it starts, and waits for it later.

A tracking server takes about 10 s to start, the team stack 10-15 s. A notebook that needs one
later on (the catch-up notebook needs both) starts it early with :func:`start_in_background` and
calls :meth:`Starting.wait` where it needs it: by then the server has usually answered, so no cell
waits long. The start is the very same as :func:`~mlflow_series.servers.start_local` and
:func:`~mlflow_series.servers.start_remote` (a real server named by MLFLOW_SERIES_TRACKING_URI, a
presenter's kept server, a running one reused, else a new one), run in a thread of the kernel;
the watchdog still ties the servers to the kernel.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from mlflow_series.servers.core import Stack, _folder
from mlflow_series.servers.local import start_local
from mlflow_series.servers.process import ServerError, display_path
from mlflow_series.servers.team import start_remote

#: The setups that can start in the background, with their start function.
BACKGROUND_STARTS = {"local": start_local, "remote": start_remote}
#: How a setup is named in what a Starting prints.
TITLES = {
    "local": "Local tracking server (SQLite + artifact folder)",
    "remote": "Remote-style stack (PostgreSQL + S3-compatible store + tracking server)",
}
#: What Starting.wait allows by default, in seconds: more than a start's slowest case (each
#: server of a setup is given core.READY_TIMEOUT, 90 s, to answer, and it raises after that).
WAIT_TIMEOUT = 300.0


class Starting:
    """A setup starting in a background thread; :meth:`wait` returns its :class:`Stack`."""

    def __init__(self, setup: str, folder: Path, future: Future) -> None:
        self.setup = setup
        self.folder = folder
        self._future = future

    def done(self) -> bool:
        """True once the start has finished, ready or failed (never blocks)."""
        return self._future.done()

    def wait(self, timeout: float = WAIT_TIMEOUT) -> Stack:
        """The running setup: returns at once if it is ready, else waits for it.

        Args:
            timeout: seconds to wait at most.

        Raises:
            ServerError: the start failed (the error of start_local or start_remote, naming the
                log to read), or it is still starting after `timeout` seconds.
        """
        try:
            return self._future.result(timeout=timeout)
        except FutureTimeout:
            raise ServerError(
                f"{TITLES[self.setup]} is still starting after {timeout:.0f} s. Its logs are in "
                f"{display_path(self.folder / 'logs')}; wait() again to keep waiting."
            ) from None

    def state(self) -> str:
        """'starting', 'ready' or 'failed: <the error>'."""
        if not self._future.done():
            return "starting"
        error = self._future.exception()
        return "ready" if error is None else f"failed: {error}"

    def __str__(self) -> str:
        return f"{TITLES[self.setup]}: {self.state()} (in the background)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


#: The starts of this process, by setup and folder: a second call while one is under way, or
#: while its setup runs, returns the same start instead of starting the setup twice.
_STARTS: dict[tuple[str, Path], Starting] = {}
_LOCK = threading.Lock()


def _still_good(start: Starting) -> bool:
    """True while a start is under way, or finished with its setup still running."""
    if not start.done():
        return True
    if start._future.exception() is not None:
        return False
    return start._future.result().is_running()


def start_in_background(setup: str, workspace: str | Path, **options: Any) -> Starting:
    """Start (or reuse) a setup in a background thread and return at once.

    Safe to call twice: while a start of the same setup in the same workspace is under way, or
    its setup still runs, the same :class:`Starting` is returned; after a failed start or a stop,
    a new start begins.

    Args:
        setup: "local" (start_local) or "remote" (start_remote).
        workspace: the notebook's workspace, a name under the workspace root or a path.
        **options: passed on to the start function (port, allowed_hosts, ...).

    Raises:
        ValueError: a setup that cannot start in the background, naming the ones that can.
    """
    if setup not in BACKGROUND_STARTS:
        raise ValueError(
            f"setup {setup!r} cannot start in the background: use one of "
            f"{', '.join(sorted(BACKGROUND_STARTS))}, or call its start function directly"
        )
    folder = _folder(workspace, setup)
    with _LOCK:
        earlier = _STARTS.get((setup, folder))
        if earlier is not None and _still_good(earlier):
            return earlier
        future: Future = Future()
        start = Starting(setup, folder, future)
        _STARTS[(setup, folder)] = start

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(BACKGROUND_STARTS[setup](workspace, **options))
        except BaseException as error:  # handed to wait(), which raises it in the notebook
            future.set_exception(error)

    threading.Thread(target=run, name=f"mlflow-series-start-{setup}", daemon=True).start()
    return start
