"""A presenter's kept servers: what a notebook clears on one before reusing it.

A presenter starts the servers before the talk (`make server`, `make remote-up`) so that nobody
waits for them on stage. The notebooks of that setup then reuse them (see core._kept) instead of
starting their own. So that a notebook's outputs are those of a fresh server, it first clears what
it made there in an earlier session, and nothing else:

- its experiments (NOTEBOOK_ITEMS; names of the form `name` or `name-...`): renamed with the time
  they were cleared, then deleted. MLflow deletes experiments softly (their runs and models stay in
  the store, out of every search and out of the UI; `mlflow gc` removes them for good), and a
  deleted experiment keeps its name, which the rename frees;
- its registered models: deleted, versions included (the registry deletes for good), so versions
  count from 1 again.
"""

from __future__ import annotations

import time

from mlflow_series import config

#: What each notebook (by its workspace name) makes on a tracking server: the names of its
#: experiments (and of those named `name-...`) and of its registered models.
NOTEBOOK_ITEMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "02_tracking_server": ((config.EXPERIMENTS["search"],), (config.MODEL_NAME,)),
    "03_remote_style_server": ((config.EXPERIMENTS["team"],), ()),
    "04_models": ((config.EXPERIMENTS["models"],), ()),
    "05_model_registry": ((config.EXPERIMENTS["registry"],), (config.MODEL_NAME,)),
    # both setups: the local server's `...-catch-up-search` and the team's `...-catch-up-team`
    "catch_up": ((config.EXPERIMENTS["catch_up"],), (config.CATCH_UP_MODEL_NAME,)),
}


def _owned(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + "-") for prefix in prefixes)


def clear_notebook(tracking_uri: str, notebook: str) -> list[str]:
    """Clear a notebook's experiments and registered models on a kept server.

    Args:
        tracking_uri: the kept server's URL.
        notebook: the notebook's workspace name, e.g. "02_tracking_server"; a name the series does
            not know clears nothing.

    Returns:
        what was cleared, e.g. ["experiment house-prices-search", "registered model ..."].
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    experiments, models = NOTEBOOK_ITEMS.get(notebook, ((), ()))
    client = MlflowClient(tracking_uri)
    cleared = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for experiment in client.search_experiments():  # active ones only
        if _owned(experiment.name, experiments):
            experiment_id = experiment.experiment_id
            client.rename_experiment(experiment_id, f"{experiment.name} (cleared {stamp})")
            client.delete_experiment(experiment_id)
            cleared.append(f"experiment {experiment.name}")
    for name in models:
        try:
            client.delete_registered_model(name)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                raise
        else:
            cleared.append(f"registered model {name}")
    return cleared
