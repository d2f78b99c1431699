"""A presenter starts the servers before the talk, and the notebooks reuse them (`make test-kept`).

As docs/presenting.md says: `make server` and `make remote-up`, then the notebooks. Each notebook
of those setups (02 and 04 on the local server, 03 and 05 on the team stack, the catch-up on both)
runs under strict nbval against the committed outputs, twice for those that register a model (a
second session on the same servers), with tests/sanitize.cfg plus tests/sanitize_kept.cfg, whose
rules are the only differences a kept server may make. Afterwards the servers are the same
processes, still answering.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlflow_series import config
from mlflow_series.servers import core

import pytest

LOCAL = ["02_tracking_server", "04_models"]
REMOTE = ["03_remote_style_server", "05_model_registry"]
#: On both servers: the catch-up starts them in the background (servers.start_in_background).
BOTH = ["catch_up"]
#: The notebooks that register a model: run again, as a second session on the same servers.
SECOND_SESSION = ["02_tracking_server", "05_model_registry", "catch_up"]
TIMEOUT = 900


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workspace root the notebooks use by default: their committed outputs show its paths.

    Raises (fails the test) if a presenter's servers already run there: the test stops them at
    the end, and a rehearsal's must not be stopped under a presenter.
    """
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    path = config.workspace_root()
    for setup in core.KEPT_SETUPS:
        if core.running(setup, core.KEPT_WORKSPACE) is not None:
            pytest.fail(
                f"a presenter's {setup} server runs in {path / core.KEPT_WORKSPACE}: stop it "
                "first (make server-down, make remote-down), then run make test-kept again"
            )
    return path


def make(*args: str) -> str:
    """Run a make target as a presenter would; its output."""
    result = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=config.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"make {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def kept_pids(setup: str) -> dict[str, int]:
    """The processes the kept server's state file records."""
    folder = config.workspace(core.KEPT_WORKSPACE) / setup
    return json.loads((folder / "state.json").read_text())["pids"]


def nbval(names: list[str], sanitize: Path) -> None:
    """Run notebooks under strict nbval, as `make test-notebooks` does, with the kept rules."""
    paths = [str(config.REPO_ROOT / "notebooks" / f"{name}.ipynb") for name in names]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2"]
    command += ["--dist", "loadfile", "--nbval", "--nbval-current-env"]
    command += ["--nbval-sanitize-with", str(sanitize), "--nbval-cell-timeout=180", *paths]
    result = subprocess.run(
        command, cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, f"strict nbval on kept servers failed:\n{result.stdout[-6000:]}"


def test_notebooks_reuse_the_servers_started_beforehand(root: Path, tmp_path: Path) -> None:
    sanitize = tmp_path / "sanitize.cfg"
    rules = [
        (config.REPO_ROOT / "tests" / name).read_text()
        for name in ("sanitize.cfg", "sanitize_kept.cfg")
    ]
    sanitize.write_text("\n".join(rules))
    try:
        assert "http://127.0.0.1:" in make("server")
        assert "http://127.0.0.1:" in make("remote-up")
        before = {setup: kept_pids(setup) for setup in core.KEPT_SETUPS}
        nbval(LOCAL + REMOTE + BOTH, sanitize)
        nbval(SECOND_SESSION, sanitize)
        after = {setup: kept_pids(setup) for setup in core.KEPT_SETUPS}
        assert after == before
        for setup in core.KEPT_SETUPS:
            stack = core.running(setup, core.KEPT_WORKSPACE)
            assert stack is not None and stack.is_running(), f"the kept {setup} server stopped"
        # each notebook made its own workspace and started no server of its own there
        for name in LOCAL + REMOTE + BOTH:
            assert not list((root / name).glob("*/state.json")), f"{name} started its own server"
    finally:
        make("server-down")
        make("remote-down", "RESET=1")
