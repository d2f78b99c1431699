"""The upgrade tests take minutes: only `make test-upgrade` collects them.

`make test` and `make test-unit` run pytest on tests/, which holds this folder; without
MLFLOW_SERIES_UPGRADE in the environment (the make target sets it) its tests are not collected.

The older MLflow release lives in a venv of its own, built from old-mlflow.txt on first use
(about 1.5 min and 460 MB) and reused while that file is unchanged: in .old-mlflow/ at the top of
the repo (git-ignored), or where MLFLOW_SERIES_OLD_MLFLOW_VENV says (e.g. a cache kept between CI
runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from mlflow_series import config

import pytest

collect_ignore_glob = [] if os.environ.get("MLFLOW_SERIES_UPGRADE") else ["test_*.py"]

HERE = Path(__file__).parent
LOCK = HERE / "old-mlflow.txt"
OLD_VERSION = re.search(r"^mlflow==(\S+)$", LOCK.read_text(), re.MULTILINE).group(1)
VENV_VAR = "MLFLOW_SERIES_OLD_MLFLOW_VENV"


def _venv_path() -> Path:
    default = config.REPO_ROOT / ".old-mlflow" / f"mlflow-{OLD_VERSION}"
    return Path(os.environ.get(VENV_VAR) or default)


def _build(venv: Path, stamp_text: str) -> None:
    """A fresh venv with the older release, installed exactly as old-mlflow.txt lists it."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    pip += ["-q", "--no-deps", "--only-binary", ":all:", "-r", str(LOCK)]
    result = subprocess.run(pip, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not build {venv}:\n{result.stdout}\n{result.stderr}")
    version = "import importlib.metadata as m; print(m.version('mlflow'))"
    check = [str(venv / "bin" / "python"), "-c", version]
    found = subprocess.run(check, capture_output=True, text=True, check=True).stdout.strip()
    if found != OLD_VERSION:
        raise RuntimeError(f"{venv} holds MLflow {found}, not {OLD_VERSION}")
    (venv / ".built-from").write_text(stamp_text)


@pytest.fixture(scope="session")
def old_python() -> Path:
    """The python of a venv holding the older MLflow release (built when missing or stale)."""
    venv = _venv_path()
    venv.parent.mkdir(parents=True, exist_ok=True)
    stamp_text = hashlib.sha256(LOCK.read_bytes()).hexdigest() + "\n"
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time (pytest-xdist workers)
        built_from = ""
        with contextlib.suppress(OSError):
            built_from = (venv / ".built-from").read_text()
        if built_from != stamp_text:
            _build(venv, stamp_text)
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def old_version() -> str:
    """The older MLflow release, as old-mlflow.txt pins it."""
    return OLD_VERSION
