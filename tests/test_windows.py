"""Native Windows: the first cell that needs a server fails with the routes, not a traceback.

Windows has no POSIX process groups (``os.killpg``, ``os.getpgid``, ``os.setsid``), which the
helpers use to start and stop every server. These tests remove those functions, as on Windows,
and check that each way of starting a server refuses with one clear message naming WSL2 and
Codespaces, before anything starts; what needs no server still works.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlflow_series import config, servers
from mlflow_series.servers import cli, process

import pytest

ROUTES = ("WSL2", "GitHub Codespaces", "README", "Windows, step by step")


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This process as on native Windows: no process groups; a workspace root of its own."""
    for name in ("killpg", "getpgid", "setsid"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.setenv(config.WORKSPACE_VAR, str(tmp_path))
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    return tmp_path


def assert_names_the_routes(message: str) -> None:
    for route in ROUTES:
        assert route in message, route
    assert "Traceback" not in message


def test_linux_and_macos_have_process_groups():
    assert process.has_process_groups()
    process.require_process_groups()  # no error here


@pytest.mark.parametrize("start", ["start_local", "start_remote", "start_auth", "start_ui"])
def test_every_server_start_refuses_with_the_routes(windows: Path, start: str):
    with pytest.raises(servers.ServerError) as refused:
        getattr(servers, start)("01_local_tracking")
    assert_names_the_routes(str(refused.value))
    assert "native Windows" in str(refused.value)
    assert not list(windows.rglob("state.json")), "nothing may have started"


def test_the_model_server_refuses_too(windows: Path):
    with pytest.raises(servers.ServerError) as refused:
        servers.serve_model("models:/ames-house-prices@champion", "http://127.0.0.1:5051")
    assert_names_the_routes(str(refused.value))


def test_what_needs_no_server_still_works(windows: Path):
    """A notebook's first cell (its fresh workspace) and the stop commands run as before."""
    folder = servers.fresh_workspace("01_local_tracking")
    assert folder.is_dir() and not any(folder.iterdir())
    assert servers.stop_all() == []
    assert servers.running("local", "01_local_tracking") is None


def test_the_command_line_prints_the_routes_and_exits_2(windows: Path, capsys):
    assert cli.main(["up", "local"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert_names_the_routes(err)


def test_a_real_server_needs_no_process_group(windows: Path, monkeypatch):
    """With MLFLOW_SERIES_TRACKING_URI the helpers start nothing, so Windows may use it."""
    monkeypatch.setenv(config.REMOTE_URI_VAR, "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(servers.ServerError, match="does not answer"):
        servers.start_local("02_tracking_server")


def test_the_readme_has_the_section_the_message_names():
    readme = (config.REPO_ROOT / "README.md").read_text()
    assert "Windows, step by step" in readme
    for route in ("wsl --install", "Codespaces"):
        assert route in readme
