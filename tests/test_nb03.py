"""Notebook 03's team command: the README's, started exactly as the notebook writes it."""

from __future__ import annotations

import re

from mlflow_series import config

import nbformat
import pytest
import test_hosts
from test_hosts import _isolated  # noqa: F401 - the same fresh ports and clean environment

NOTEBOOK = config.REPO_ROOT / "notebooks" / "03_remote_style_server.ipynb"
START, END = "<!-- team-server:start -->", "<!-- team-server:end -->"


def team_section(text: str) -> str:
    """The text between the team-server markers (exactly one pair)."""
    assert text.count(START) == text.count(END) == 1
    return text[text.index(START) : text.index(END) + len(END)]


def notebook_team_section() -> str:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    [cell] = [c for c in nb.cells if c.cell_type == "markdown" and START in c.source]
    return team_section(cell.source)


def notebook_team_blocks() -> tuple[str, str]:
    """The basic_auth.ini and the shell commands of the notebook's team command."""
    section = notebook_team_section()
    ini = re.search(r"```ini\n(.*?)```", section, re.S).group(1)
    bash = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return ini, bash


def test_the_notebook_shows_the_readmes_team_command():
    assert notebook_team_section() == team_section(test_hosts.README.read_text())


def test_the_team_command_has_what_a_first_start_with_basic_auth_needs():
    ini, bash = notebook_team_blocks()
    for variable in (
        "MLFLOW_AUTH_ADMIN_PASSWORD",  # the first start creates the admin with it
        "MLFLOW_FLASK_SERVER_SECRET_KEY",  # signs the login sessions
        "MLFLOW_AUTH_CONFIG_PATH",  # the settings below: users kept in PostgreSQL
    ):
        assert f"export {variable}=" in bash, variable
    assert "--app-name basic-auth" in bash
    assert re.search(r"^database_uri = postgresql", ini, re.M)


@pytest.mark.slow
def test_the_notebooks_team_command_starts_as_written(tmp_path_factory, monkeypatch):
    """test_hosts' start of the README's command, fed the notebook's blocks instead."""
    monkeypatch.setattr(test_hosts, "readme_team_blocks", notebook_team_blocks)
    test_hosts.test_the_readme_team_command_serves_every_name_it_lists(tmp_path_factory)
