"""The environment check (`make check`, `python -m mlflow_series.envcheck`, notebook 00's setup).

Unit tests make each check fail the way an attendee's laptop would (an old Python, native
Windows, a wrong pin, a missing package, a full disk) and check that the line names the fix or the
route. A subprocess runs the entry point with no third-party package at all, as before
`make setup` or on Windows (CI's Windows job runs the same). The slow test starts and stops both
servers in a workspace of its own and checks the notebook's lines, which must be the same on
every laptop that passes.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from mlflow_series import config, envcheck, servers

import pytest
from test_servers import fresh_ports

ROUTES = ("GitHub Codespaces", "Binder", "read-along site")


def lines(report: envcheck.Report) -> list[str]:
    return str(report).splitlines()


# --------------------------------------------------------------------------- unit tests


def test_a_passing_check_is_one_line_and_its_numbers_only_with_details():
    check = envcheck.Check("Python", True, "3.11 or newer", "3.11.7", "install it")
    assert check.line(details=False) == "ok    Python: 3.11 or newer"
    assert check.line(details=True) == "ok    Python: 3.11 or newer (3.11.7)"


def test_a_failing_check_shows_its_fix():
    check = envcheck.Check("disk", False, "1 GB free or more", "0 GB free", "make clean")
    assert check.line(details=False) == "FAIL  disk: 1 GB free or more\n      -> make clean"


def test_the_verdict_names_the_failures_and_the_routes():
    report = envcheck.Report(
        [envcheck.Check("a", True, "fine"), envcheck.Check("b", False, "broken", fix="fix b")]
    )
    assert not report.ok
    verdict = report.verdict()
    assert verdict.startswith("1 of 2 checks failed (b)")
    for route in ROUTES:
        assert route in verdict
    assert envcheck.Report([envcheck.Check("a", True, "fine")]).verdict() == (
        "Ready: all 1 checks passed."
    )


def test_an_old_python_fails_with_the_fix(monkeypatch):
    assert envcheck.check_python().ok
    monkeypatch.setattr(envcheck, "MIN_PYTHON", (sys.version_info.major + 1, 0))
    check = envcheck.check_python()
    assert not check.ok
    assert "make setup PYTHON=" in check.fix and "GitHub Codespaces" in check.fix


def test_native_windows_fails_and_names_wsl2_and_codespaces(monkeypatch):
    assert envcheck.check_system().ok
    monkeypatch.delattr(os, "killpg")
    check = envcheck.check_system()
    assert not check.ok
    assert "WSL2" in check.fix and "GitHub Codespaces" in check.fix


def test_a_missing_make_names_how_to_install_it(monkeypatch):
    monkeypatch.setattr(envcheck.shutil, "which", lambda name: None)
    check = envcheck.check_make()
    assert not check.ok and "xcode-select --install" in check.fix


def test_a_full_disk_and_little_memory_fail(monkeypatch):
    usage = envcheck.shutil.disk_usage(config.REPO_ROOT)._replace(free=100 * 1024**2)
    monkeypatch.setattr(envcheck.shutil, "disk_usage", lambda path: usage)
    assert not envcheck.check_disk().ok
    monkeypatch.setattr(envcheck, "available_memory", lambda: 512 * 1024**2)
    check = envcheck.check_memory()
    assert not check.ok and check.detail == "0.5 GB available"
    monkeypatch.setattr(envcheck, "available_memory", lambda: None)
    assert envcheck.check_memory().ok  # a system that does not say is not a failure


def test_the_pins_are_read_from_requirements_txt():
    found = envcheck.pins()
    assert found["mlflow"] == "3.17.2"  # extras dropped: mlflow[auth]==3.17.2
    assert found["jupyter-server-proxy"]
    assert set(envcheck.IMPORTS) | set(envcheck.FOUND) <= set(found)


def test_a_wrong_or_missing_pin_fails_and_stops_before_the_servers(monkeypatch):
    monkeypatch.delenv(envcheck.NEWER_OK_ENV, raising=False)
    wanted = envcheck.pins() | {"mlflow": "2.0.0", "not-a-package-xyz": "1.0"}
    monkeypatch.setattr(envcheck, "pins", lambda: wanted)
    check = envcheck.check_packages()
    assert not check.ok
    assert "missing: not-a-package-xyz" in check.detail
    assert f"mlflow {importlib.metadata.version('mlflow')} (pinned 2.0.0)" in check.detail
    assert "make setup" in check.fix
    names = [c.name for c in envcheck.checks(servers=True)]
    assert names[-1] == "packages"  # no port nor server check without the packages


def test_make_test_latest_accepts_a_newer_release_and_names_it(monkeypatch):
    """In make test-latest's venv a newer release is the point; an older one still fails."""
    installed = importlib.metadata.version("mlflow")
    monkeypatch.setenv(envcheck.NEWER_OK_ENV, "1")
    monkeypatch.setattr(envcheck, "pins", lambda: {"mlflow": "2.0.0"})
    newer = envcheck.check_packages()
    assert newer.ok and f"newer than the pin: mlflow {installed} (pinned 2.0.0)" in newer.detail
    monkeypatch.setattr(envcheck, "pins", lambda: {"mlflow": "99.0"})
    older = envcheck.check_packages()
    assert not older.ok and f"mlflow {installed} (pinned 99.0)" in older.detail
    monkeypatch.delenv(envcheck.NEWER_OK_ENV)
    monkeypatch.setattr(envcheck, "pins", lambda: {"mlflow": "2.0.0"})
    assert not envcheck.check_packages().ok


def test_the_ports_check_passes_when_a_port_is_taken(monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        monkeypatch.setitem(servers.PORTS, "local", sock.getsockname()[1])
        check = envcheck.check_ports()
    assert check.ok and "taken: the helpers use free ports instead" in check.detail


#: The basic checks' lines on a laptop that passes them: no number of this machine in them.
BASIC_LINES = [
    "ok    Python: 3.11 or newer",
    "ok    system: Linux or macOS (the servers run in POSIX process groups)",
    "ok    make: installed",
    "ok    disk: 1 GB free or more",
    "ok    memory: 1.5 GB available or more",
    "ok    packages: the pinned versions, installed and importable",
    "ok    ports: free, or replaced by free ones",
]


def test_the_quick_report_is_the_same_on_every_laptop_that_passes():
    """What notebook 00 shows without the servers: no number of this machine in it."""
    assert lines(envcheck.report(servers=False)) == [*BASIC_LINES, "Ready: all 7 checks passed."]
    assert list(envcheck.checks(servers=False, basics=False)) == []


def test_the_entry_point_runs_without_any_installed_package(tmp_path):
    """`python -S` leaves site-packages out: what a fresh laptop has before `make setup`. With
    process groups removed too, it is what CI's Windows job runs."""
    code = textwrap.dedent(
        """
        import os, sys
        if sys.argv[1] == "windows":
            for name in ("killpg", "getpgid", "setsid"):
                delattr(os, name)
        from mlflow_series import envcheck
        sys.exit(envcheck.main(["--quick"]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(config.REPO_ROOT / "src")}
    for system in ("linux", "windows"):
        done = subprocess.run(
            [sys.executable, "-S", "-c", code, system],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=tmp_path,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr == ""
        out = done.stdout
        assert "FAIL  packages" in out and "missing: mlflow" in out
        for route in ROUTES:
            assert route in out
        if system == "windows":
            assert "FAIL  system" in out and "WSL2" in out


# --------------------------------------------------------------------------- real servers


@pytest.mark.slow
def test_the_notebook_report_starts_both_servers_and_is_the_same_everywhere(
    tmp_path: Path, monkeypatch
):
    for key, port in fresh_ports().items():
        monkeypatch.setitem(servers.PORTS, key, port)
    monkeypatch.setenv(config.WORKSPACE_VAR, str(tmp_path))  # no presenter's server here
    monkeypatch.delenv(config.REMOTE_URI_VAR, raising=False)
    report = envcheck.report(workspace="envcheck")
    assert lines(report) == [
        *BASIC_LINES,
        "ok    local server: a tracking server (SQLite + artifact folder) starts and stops here",
        "ok    team stack: PostgreSQL + S3 store + tracking server start and stop here",
        "Ready: all 9 checks passed.",
    ]
    for setup in ("local", "remote"):  # stopped, and their data deleted
        assert not (tmp_path / "envcheck" / setup).exists()
        assert servers.running(setup, "envcheck") is None
