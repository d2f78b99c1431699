"""The notebooks against a real MLflow server, as the README promises (`make test-external`).

Each notebook that can use a team's server (02-05) runs with MLFLOW_SERIES_TRACKING_URI naming a
server the series did not start (see conftest.py): a plain one, and one with basic auth, logged in
with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. On the plain server each runs twice in a
row, since a team server keeps the runs of earlier sessions. 01 (no server, by design) and 06 (the
admin of an auth server it starts itself) are not run here.

Outputs are not compared with the committed ones (a real server gives other ids and counts): a
cell that raises, or prints a traceback (e.g. from a subprocess it started), fails the test with
the notebook, the server, the run and the cell. Nothing the notebook started may still run once
its kernel has stopped.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from mlflow_series import config, nbtools

import nbformat
import pytest
import requests
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

NOTEBOOKS = ["02_tracking_server", "03_remote_style_server", "04_models", "05_model_registry"]
SERVERS = ["plain", "basic-auth"]
#: Runs in a row against the same server: a team server keeps the runs of earlier sessions. Once
#: on the auth server (its login is what that case checks), to keep the target within minutes.
ROUNDS = {"plain": 2, "basic-auth": 1}
CELL_TIMEOUT = 180
#: Carried by the kernel of one test and everything it starts.
KERNEL_MARK_VAR = "MLFLOW_SERIES_EXTERNAL_KERNEL"

CASES = [
    # one xdist group per notebook: the same notebook never runs twice at once (04's model server
    # prefers one port), while different notebooks share a server, as a team does
    pytest.param(name, kind, id=f"{name}-{kind}", marks=pytest.mark.xdist_group(name))
    for name in NOTEBOOKS
    for kind in SERVERS
]


#: The experiment each notebook logs to, where its runs must appear on the real server.
EXPERIMENT_OF = {
    "02_tracking_server": config.EXPERIMENTS["search"],
    "03_remote_style_server": config.EXPERIMENTS["team"],
    "04_models": config.EXPERIMENTS["models"],
    "05_model_registry": config.EXPERIMENTS["registry"],
}


def run_count(server: dict[str, Any], experiment: str) -> int:
    """How many runs the real server holds in an experiment (0 if it does not exist yet)."""
    auth = (server["username"], server["password"]) if "username" in server else None
    api = f"{server['url']}/api/2.0/mlflow"
    found = requests.get(
        f"{api}/experiments/get-by-name",
        params={"experiment_name": experiment},
        auth=auth,
        timeout=30,
    )
    if found.status_code == 404:
        return 0
    found.raise_for_status()
    experiment_id = found.json()["experiment"]["experiment_id"]
    total, token = 0, None
    while True:
        body = {"experiment_ids": [experiment_id], "max_results": 1000, "page_token": token}
        page = requests.post(f"{api}/runs/search", json=body, auth=auth, timeout=30).json()
        total += len(page.get("runs", []))
        token = page.get("next_page_token")
        if not token:
            return total


def first_error(cell: Any) -> str | None:
    """The error a cell raised, or the last line of an output holding a traceback; else None."""
    for output in cell.outputs:
        if output.output_type == "error":
            return f"{output.ename}: {output.evalue}"
        text = output.get("text", "")
        if "Traceback (most recent call last)" in text:
            last = [line for line in text.splitlines() if line.strip()][-1]
            return f"printed a traceback ending in: {last.strip()[:300]}"
    return None


def execute(path: Path, timeout: int = CELL_TIMEOUT) -> str | None:
    """Run a notebook in a fresh kernel in its folder, cell by cell; the first problem, or None."""
    nb = nbformat.read(path, as_version=4)
    client = nbtools.notebook_client(nb, path, timeout)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    with client.setup_kernel():
        for number, (index, cell) in enumerate(code, start=1):
            where = f"cell {index} (code cell {number}: {cell.source.splitlines()[0][:60]!r})"
            try:
                client.execute_cell(cell, index)
            except CellExecutionError:
                pass  # the error output names it, below
            except CellTimeoutError:
                return f"{where}: timed out after {timeout} s"
            except DeadKernelError:
                return f"{where}: the kernel died"
            if (error := first_error(cell)) is not None:
                return f"{where}: {error}"
    return None


@pytest.fixture
def server_env(
    request: pytest.FixtureRequest,
    real_servers: dict[str, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """The environment a kernel inherits to use one of the real servers, as the README says."""
    server = real_servers[request.node.callspec.params["kind"]]
    monkeypatch.setenv(config.REMOTE_URI_VAR, server["url"])
    # the workspace of this pytest worker, not the developer's (notebook 04 keeps its model
    # server's state there)
    monkeypatch.setenv(config.WORKSPACE_VAR, str(tmp_path_factory.getbasetemp() / "workspace"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var, key in (
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
    ):
        if key in server:
            monkeypatch.setenv(var, server[key])
        else:
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(KERNEL_MARK_VAR, secrets.token_hex(8))
    return server


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_notebook_runs_against_a_real_server(
    name: str, kind: str, server_env: dict[str, Any], find_leftovers: Any
):
    path = config.REPO_ROOT / "notebooks" / f"{name}.ipynb"
    problems = []
    counts = [run_count(server_env, EXPERIMENT_OF[name])]
    for attempt in range(1, ROUNDS[kind] + 1):
        problem = execute(path)
        if problem is not None:
            problems.append(f"{path.name} against the {kind} server, run {attempt}: {problem}")
            break
        counts.append(run_count(server_env, EXPERIMENT_OF[name]))
        if counts[-1] <= counts[-2]:  # the notebook logged elsewhere (e.g. a server of its own)
            problems.append(
                f"{path.name} against the {kind} server, run {attempt}: no new run reached "
                f"experiment {EXPERIMENT_OF[name]!r} on that server ({counts[-2]} -> {counts[-1]})"
            )
    mark = os.environ[KERNEL_MARK_VAR]
    left = find_leftovers(KERNEL_MARK_VAR, mark, {os.getpid()})
    problems += [f"still running after {path.name} ({kind}), killed: {line}" for line in left]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
