"""Every code cell of every notebook is safe to run twice in a row, as CONTRIBUTING promises.

Run by `make test-twice` (NB=notebooks/04_models.ipynb for one notebook), two notebooks at a
time. Each notebook runs in a fresh kernel in its folder with every code cell executed twice
before the next (1, 1, 2, 2, ...); a cell that raises, or prints a warning or a traceback, fails
the test with the notebook, the cell and the error. Outputs are not compared: a re-run may
legitimately print other ids.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlflow_series import nbtools

import pytest

#: The notebooks named in NB (space-separated paths), or every notebook of the series.
NOTEBOOKS = nbtools.notebooks(os.environ.get("NB", "").split())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_cell_survives_a_second_run(path: Path):
    found = nbtools.run_twice(path, timeout=180)
    if found:
        pytest.fail("\n".join(found), pytrace=False)
