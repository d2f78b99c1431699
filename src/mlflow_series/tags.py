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


#: The experiment tag that tells MLflow's UI (3.x) what an experiment is for. Without it, the UI
#: opens an experiment with no logged model yet in its GenAI view (traces, judges); the series'
#: experiments are for model training, so the UI should open their runs table. The key and the
#: value "custom_model_development" are the ones the UI itself writes when a user picks
#: "Model training" for an experiment (read from MLflow 3.17's UI bundle; GenAI's value is
#: "genai_development", as in mlflow/demo/generators/traces.py).
TRAINING_VIEW: dict[str, str] = {"mlflow.experimentKind": "custom_model_development"}
