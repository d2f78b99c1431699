"""Stop a setup's servers when the process that started them dies (a kernel, a test run).

``python -m mlflow_series.watchdog OWNER_PID STATE_FILE`` runs in its own session. Every half
second it checks the owner; when the owner is gone (even killed with SIGKILL) it stops every
process group the state file lists and removes the file. It exits on its own once the state
file is removed by a normal stop.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

POLL = 0.5
#: How long to wait for the state file to appear before giving up.
FIRST_STATE_TIMEOUT = 30.0


def owner_alive(proc: psutil.Process) -> bool:
    """True while the owner runs (a zombie counts as dead)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(owner_pid: int, state_file: Path) -> None:
    """Wait for the owner to die, then stop what the state file lists."""
    from mlflow_series.servers.core import _read_json, _stop_state

    try:
        owner = psutil.Process(owner_pid)
    except psutil.NoSuchProcess:
        owner = None
    started = time.monotonic()
    seen = False
    while True:
        exists = state_file.exists()
        seen = seen or exists
        if seen and not exists:
            return  # stopped normally
        if not seen and time.monotonic() - started > FIRST_STATE_TIMEOUT:
            return
        if owner is None or not owner_alive(owner):
            state = _read_json(state_file)
            if state is not None and (state.get("owner") or {}).get("pid") == owner_pid:
                _stop_state(state)
                state_file.unlink(missing_ok=True)
            return
        time.sleep(POLL)


if __name__ == "__main__":
    watch(int(sys.argv[1]), Path(sys.argv[2]))
