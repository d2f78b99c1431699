"""The reproducibility tags every run of the series carries: who, on which data, with which code."""

from __future__ import annotations

import getpass

from mlflow_series import config, data

import pandas as pd


def reproducibility_tags(X: pd.DataFrame, y: pd.Series) -> dict[str, str]:
    """The tags a colleague needs to trust and reproduce a run trained on features X, target y.

    Returns:
        {"author": the operating-system user, "data_digest": 12 hex characters of
        data.data_digest over X and y together (it changes if any feature value, price, row or
        column name changes), "git_commit": the repository's commit, or "not a git checkout"}.
    """
    return {
        "author": getpass.getuser(),
        "data_digest": data.data_digest(pd.concat([X, y], axis=1)),
        "git_commit": config.git_commit() or "not a git checkout",
    }
