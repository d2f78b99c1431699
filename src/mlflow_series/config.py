"""Paths, names, seeds and the environment settings every notebook shares.

Everything a notebook might want to change lives here, and each path can be overridden with an
environment variable, so the same notebooks run on a laptop, in CI and against a real server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
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
    # the catch-up notebook: its own names, so that it never touches the numbered notebooks' runs
    # (on a presenter's kept servers, servers.kept clears every `house-prices-catch-up-...`)
    "catch_up": "house-prices-catch-up",
    "catch_up_search": "house-prices-catch-up-search",
    "catch_up_team": "house-prices-catch-up-team",
}
#: The registered model of the case study.
MODEL_NAME = "ames-house-prices"
#: The catch-up notebook's registered model, apart from the numbered notebooks' MODEL_NAME.
CATCH_UP_MODEL_NAME = "catch-up-house-prices"

#: Settings that keep MLflow's output quiet and the same from run to run.
QUIET_ENV = {
    # the "View run ... at: http://..." line printed after each run on a server
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # tqdm bars for artifact uploads and downloads
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # usage telemetry, on by default
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    # MLflow's INFO lines ("Creating a new experiment", "Waiting up to 300 seconds ..."): they go
    # to stderr, which JupyterLab shows on red, so they read as errors; mlflow_info() shows them
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # git's "safe.directory" noise when the repo belongs to another user
    "GIT_PYTHON_REFRESH": "quiet",
}


PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")

_ON_PURPOSE = f"to use your own server, set {REMOTE_URI_VAR}"
_BY_SERVER = "the series' servers keep everything in the notebook's workspace; " + _ON_PURPOSE

#: Environment variables that would move the tutorial's runs, experiments, models, traces or
#: artifacts somewhere else. Importing the package removes them for the session, with one warning
#: naming each (apply_quiet_env); each value is the hint the warning gives ({value}: the value
#: found). Taken from MLflow 3.17's mlflow/environment_variables.py, and from the `mlflow server`
#: options read from the environment: the series' servers inherit the notebook's environment
#: (servers.server_env). tests/test_config.py proves each one.
#: Kept on purpose, since a real server named by MLFLOW_SERIES_TRACKING_URI may need them and the
#: series' own stores and servers ignore them: credentials (MLFLOW_TRACKING_USERNAME, _PASSWORD,
#: _TOKEN, _AUTH, _AWS_SIGV4), TLS settings and MLFLOW_S3_ENDPOINT_URL (clients of the series'
#: servers never talk to S3; the servers get their own).
#: Checked and harmless: MLFLOW_BACKEND_STORE_URI and MLFLOW_ARTIFACTS_DESTINATION (the series
#: passes both options to `mlflow server`), MLFLOW_WORKSPACE_STORE_URI (used only with
#: workspaces), MLFLOW_TRACKING_DIR and MLFLOW_REGISTRY_DIR (no longer read by MLflow 3.17).
STRAY_ENV: dict[str, str] = {
    # the tracking store: every run, experiment and logged model would go to that server or file
    "MLFLOW_TRACKING_URI": f"to use that server on purpose, set {REMOTE_URI_VAR}={{value}}",
    # the model registry: registered versions and aliases would go to another store than the runs
    "MLFLOW_REGISTRY_URI": "the series registers models where its runs are; " + _ON_PURPOSE,
    # the experiment of runs started before mlflow.set_experiment (notebook 01's first runs)
    "MLFLOW_EXPERIMENT_NAME": "each notebook picks its experiment with mlflow.set_experiment()",
    "MLFLOW_EXPERIMENT_ID": "each notebook picks its experiment with mlflow.set_experiment()",
    # mlflow.start_run() would resume that run (or fail: it is not in the tutorial's store)
    "MLFLOW_RUN_ID": "to log to that run on purpose, use mlflow.start_run(run_id=...)",
    # metrics and traces would be linked to that LoggedModel (log_metrics fails if it is missing);
    # _MLFLOW_ACTIVE_MODEL_ID is the older name, still read
    "MLFLOW_ACTIVE_MODEL_ID": "to link to a model on purpose, call mlflow.set_active_model()",
    "_MLFLOW_ACTIVE_MODEL_ID": "to link to a model on purpose, call mlflow.set_active_model()",
    # traces would go to that experiment (or Unity Catalog schema), not the active experiment
    "MLFLOW_TRACING_DESTINATION": "to send traces elsewhere, call mlflow.tracing.set_destination()",
    # not MLflow's own, but MLflow reads them: traces would go to that OpenTelemetry collector
    # instead of the experiment (or nowhere, without the OTLP exporter package)
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "traces go to the notebook's experiment",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "traces go to the notebook's experiment",
    # workspaces mode for the local store and the series' servers: experiments and models would
    # live in a workspace (without one, notebook 01's first run fails)
    "MLFLOW_ENABLE_WORKSPACES": "the series' stores have no workspaces; " + _ON_PURPOSE,
    # the workspace of a server with workspaces; `mlflow server` refuses to start with it set
    # ("client-only"), so none of the series' servers would start
    "MLFLOW_WORKSPACE": "on your own server, call mlflow.set_workspace() in the notebook",
    # read by `mlflow server`: registered models would go to that other database
    "MLFLOW_REGISTRY_STORE_URI": _BY_SERVER,
    # read by `mlflow server`: searches and reads would come from that other database
    "MLFLOW_READ_REPLICA_BACKEND_STORE_URI": _BY_SERVER,
    # read by `mlflow server`: new experiments' artifacts would go there, written by the clients
    # themselves instead of through the server
    "MLFLOW_DEFAULT_ARTIFACT_ROOT": _BY_SERVER,
    # read by `mlflow server`: "false" stops the proxying, so artifacts would go to the server's
    # working folder (./mlruns), written by the clients themselves
    "MLFLOW_SERVE_ARTIFACTS": _BY_SERVER,
}


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


def stray_settings() -> dict[str, str]:
    """The STRAY_ENV variables set in the environment (even empty), with their values, in
    STRAY_ENV's order.

    MLFLOW_TRACKING_URI does not count when it names the same server as MLFLOW_SERIES_TRACKING_URI.
    """
    found = {name: os.environ[name] for name in STRAY_ENV if name in os.environ}
    if "MLFLOW_TRACKING_URI" in found and found["MLFLOW_TRACKING_URI"] == remote_tracking_uri():
        del found["MLFLOW_TRACKING_URI"]
    return found


def _hide_password(value: str) -> str:
    """A URI with its password (``//user:password@host``) written ``***``."""
    return re.sub(r"(//[^/:@\s]+):[^/@\s]+@", r"\1:***@", value)


def stray_warning(found: dict[str, str]) -> str:
    """The warning for the stray settings `found`: one line per variable with its hint."""
    lines = [
        "The series ignores these MLflow settings from your environment, so that the tutorial's "
        "runs, models and traces stay where the notebooks put them:"
    ]
    for name, value in found.items():
        shown = _hide_password(value)
        lines.append(f"- {name}={shown}: {STRAY_ENV[name].format(value=shown)}")
    return "\n".join(lines)


def apply_quiet_env() -> None:
    """Quiet MLflow's output, and remove the stray settings (STRAY_ENV) with one warning.

    Runs when `mlflow_series` is imported, so the warning points at that import (stacklevel 3:
    this function, the package's __init__, then the importer; Python skips importlib's frames).
    """
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # Behind a corporate proxy, requests to the local servers must not go through the proxy.
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h]
        missing = [h for h in ("127.0.0.1", "localhost") if h not in hosts]
        if missing and (hosts or any(os.environ.get(v) for v in PROXY_VARS)):
            os.environ[var] = ",".join(hosts + missing)
    if "mlflow" in sys.modules:  # imported first: its loggers already read the level
        logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    found = stray_settings()
    for name in found:
        del os.environ[name]
    shown = {name: value for name, value in found.items() if value}  # empty: removed silently
    if shown:
        warnings.warn(stray_warning(shown), UserWarning, stacklevel=3)


@contextlib.contextmanager
def mlflow_info() -> Iterator[None]:
    """Show MLflow's INFO lines inside a `with` block, for a cell that is about one of them.

    Outside such blocks QUIET_ENV keeps MLflow's logger at WARNING (MLFLOW_LOGGING_LEVEL).
    """
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)


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
