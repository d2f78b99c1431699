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
