"""Paths, names, seeds and the environment settings every notebook shares.

Everything a notebook might want to change lives here, and each path can be overridden with an
environment variable, so the same notebooks run on a laptop, in CI and against a real server.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

#: Set it to a tracking server's URL (e.g. https://mlflow.example.com) to run the notebooks
#: against a real deployment: the helpers then start no server of their own.
REMOTE_URI_VAR = "MLFLOW_SERIES_TRACKING_URI"
#: Where notebooks and servers keep their state (one subfolder per notebook). Default: workspace/.
WORKSPACE_VAR = "MLFLOW_SERIES_WORKSPACE"

SEED = 42

#: The experiment each notebook logs to.
EXPERIMENTS = {
    "local": "house-prices-local",
    "search": "house-prices-search",
    "team": "house-prices-team",
    "models": "house-prices-models",
    "registry": "house-prices-registry",
    "limits": "house-prices-limits",
}
#: The registered model of the case study.
MODEL_NAME = "ames-house-prices"

#: Settings that keep MLflow's output quiet and the same from run to run.
QUIET_ENV = {
    # the "View run ... at: http://..." line printed after each run on a server
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # tqdm bars for artifact uploads and downloads
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # usage telemetry, on by default
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    # git's "safe.directory" noise when the repo belongs to another user
    "GIT_PYTHON_REFRESH": "quiet",
}


PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


def _find_repo_root() -> Path:
    """The folder that holds data/ and notebooks/: the repo, when installed editable."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "data").is_dir() and (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


REPO_ROOT = _find_repo_root()
DATA_DIR = REPO_ROOT / "data"
DATA_FILE = DATA_DIR / "ames.csv.gz"


def workspace_root() -> Path:
    """The folder for everything the series creates at run time (git-ignored)."""
    return Path(os.environ.get(WORKSPACE_VAR) or REPO_ROOT / "workspace").resolve()


def workspace(name: str) -> Path:
    """The workspace subfolder of one notebook or tool, created if missing."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"workspace name {name!r}: use a plain folder name such as '02_server'")
    path = workspace_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def remote_tracking_uri() -> str | None:
    """The real tracking server named by MLFLOW_SERIES_TRACKING_URI, or None to run locally."""
    return os.environ.get(REMOTE_URI_VAR) or None


def apply_quiet_env() -> None:
    """Quiet MLflow's output and keep a stray MLFLOW_TRACKING_URI from catching tutorial runs."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Behind a corporate proxy, requests to the local servers must not go through the proxy.
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h]
        missing = [h for h in ("127.0.0.1", "localhost") if h not in hosts]
        if missing and (hosts or any(os.environ.get(v) for v in PROXY_VARS)):
            os.environ[var] = ",".join(hosts + missing)
    stray = os.environ.get("MLFLOW_TRACKING_URI")
    if stray and stray != remote_tracking_uri():
        warnings.warn(
            f"MLFLOW_TRACKING_URI={stray} is set in your environment; the series ignores it so "
            f"that tutorial runs do not land on that server. To use it on purpose, set "
            f"{REMOTE_URI_VAR}={stray}.",
            stacklevel=2,
        )
        del os.environ["MLFLOW_TRACKING_URI"]


def git_commit() -> str | None:
    """The commit of the repository the series runs from, or None outside a git checkout."""
    import subprocess

    try:
        result = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
