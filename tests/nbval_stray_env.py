"""Strict nbval with every stray MLflow setting set: the pytest plugin of `make test-stray-env`.

Before any kernel starts, each variable of ``config.STRAY_ENV`` gets the hostile value of
tests/test_config.py (another tracking store and registry in a scratch folder, a team's
experiment, a run id, a trace destination...), all at once, and so do the settings the series
keeps (credentials but the user name, MLFLOW_S3_ENDPOINT_URL). The notebooks must then give their
committed outputs under strict nbval, with one expected difference: the setup cell, whose import
of ``mlflow_series`` drops those settings, must also show the series' warning naming each one,
exactly. After a notebook's last cell the scratch folder must still be empty.

The warning shows the kernel's file for the cell (``/tmp/ipykernel_<pid>/<n>.py:<line>``):
tests/sanitize.cfg's rule for temporary paths makes it comparable.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import IPyNbCell

with warnings.catch_warnings():
    # An xdist worker inherits the hostile environment: its own import of the package would warn
    # too. The warning checked is the kernels' one, in each setup cell.
    warnings.simplefilter("ignore", UserWarning)
    from mlflow_series import config as series_config

    from tests.test_config import HOSTILE, KEPT

SCRATCH = Path(tempfile.mkdtemp(prefix="mlflow-series-stray-env-"))
VALUES = {name: value.format(tmp=SCRATCH) for name, (_, value) in HOSTILE.items()}
IMPORT = re.compile(r"(import mlflow_series\b|from mlflow_series[ .])")
_LAST_CELLS: set[IPyNbCell] = set()


def pytest_configure(config: pytest.Config) -> None:
    """Set the hostile environment that the kernels (started later) inherit."""
    os.environ.update(VALUES)
    # MLFLOW_TRACKING_USERNAME is left out: MLflow makes it the author of each run (the mlflow.user
    # tag), which notebook 01 shows; the series keeps it on purpose, for real servers.
    os.environ.update({k: v for k, v in KEPT.items() if k != "MLFLOW_TRACKING_USERNAME"})


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SCRATCH, ignore_errors=True)


def expected_warning(source: str) -> nbformat.NotebookNode:
    """The stderr output that the first import of mlflow_series in `source` must print."""
    lines = source.splitlines()
    number = next(i for i, line in enumerate(lines, 1) if IMPORT.match(line))
    found = {name: VALUES[name] for name in series_config.STRAY_ENV}
    message = series_config.stray_warning(found)
    text = f"/tmp/ipykernel/cell.py:{number}: UserWarning: {message}\n  {lines[number - 1]}\n"
    return nbformat.v4.new_output("stream", name="stderr", text=text)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Add the warning to each notebook's setup cell; note each notebook's last cell."""
    cells = [item for item in items if isinstance(item, IPyNbCell)]
    notebooks = {cell.parent for cell in cells}
    for notebook in notebooks:
        own = [cell for cell in cells if cell.parent is notebook]
        setup = next((c for c in own if any(map(IMPORT.match, c.cell.source.splitlines()))), None)
        if setup is None:
            raise pytest.UsageError(f"{notebook.name}: no cell imports mlflow_series")
        setup.cell.outputs.insert(0, expected_warning(setup.cell.source))
        _LAST_CELLS.add(own[-1])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """After a notebook's last cell: nothing may have been written to the hostile places."""
    outcome = yield
    report = outcome.get_result()
    if call.when == "call" and report.passed and item in _LAST_CELLS:
        left = sorted(path.name for path in SCRATCH.iterdir())
        if left:
            report.outcome = "failed"
            report.longrepr = f"the stray settings were used: {left} appeared in {SCRATCH}"
