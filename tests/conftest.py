"""Fixtures shared by the test modules: the case-study data, loaded once per session."""

from __future__ import annotations

from mlflow_series import data

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def ames() -> pd.DataFrame:
    """The Ames data, as the notebooks load it."""
    return data.load_ames()


@pytest.fixture(scope="session")
def split(ames: pd.DataFrame) -> data.Split:
    """The train/validation/test split of the 2006-2009 sales."""
    return data.split_data(ames)


#: MLflow settings that mlflow.set_tracking_uri() and mlflow.set_experiment() also write into
#: os.environ (for the processes MLflow starts). A test that "restores" the URI it read with
#: get_tracking_uri() leaves the resolved default there, and every later test in the same worker,
#: and every process it starts (notebook kernels, `python -m mlflow_series.envcheck`), then sees a
#: stray setting. MLflow keeps its own copy in memory, so undoing them after each test changes
#: nothing for the tests that set them.
GUARDED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
)


def _undo_mlflow_settings():
    """Yield, then put GUARDED_ENV back as it was before."""
    import os

    before = {name: os.environ.get(name) for name in GUARDED_ENV}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def no_leaked_mlflow_settings():
    """Undo, after each test, whatever it left of MLflow's settings in os.environ."""
    yield from _undo_mlflow_settings()


@pytest.fixture(autouse=True, scope="module")
def no_leaked_mlflow_settings_per_module():
    """The same after each module, for what a module-scoped fixture's teardown leaves."""
    yield from _undo_mlflow_settings()
