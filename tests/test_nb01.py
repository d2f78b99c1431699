"""Notebooks 00 and 01: the learning-curve figure, and the MLflow facts they state, checked.

The facts are checked against the installed MLflow in a fresh Python process (autologging patches
scikit-learn and the tracking URI is global state, so nothing leaks into other tests), working in
a temporary folder with no MLflow setting from outside:

- no tracking URI: runs go to ``mlflow.db`` in the working folder (3.7+), unless ``mlruns/``
  there already holds an experiment, which keeps MLflow on the file store;
- the file store is refused unless ``MLFLOW_ALLOW_FILE_STORE=true`` (3.13+);
- a deleted run is only marked ``deleted``: searches skip it unless asked;
- ``mlflow.user`` is what the client sends (``MLFLOW_TRACKING_USERNAME`` first);
- autologging saves models with cloudpickle by default, and logs a ``sklearn.metrics`` call on a
  model's predictions as a post-training metric;
- a scikit-learn model is saved with skops, its trusted types in its MLmodel file, and
  ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`` refuses to load it, skops included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from mlflow_series import plots

import pytest
from matplotlib.figure import Figure

CURVE = {10: 44_187, 20: 31_611, 50: 24_165, 100: 23_221, 200: 22_975}


def test_learning_curve_draws_each_step_in_dollars() -> None:
    figure = plots.learning_curve(CURVE)
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [10, 20, 50, 100, 200]
    assert list(line.get_ydata()) == [44_187, 31_611, 24_165, 23_221, 22_975]
    assert ax.get_ylabel() == "val_rmse" and "Trees" in ax.get_xlabel()
    assert ax.yaxis.get_major_formatter()(25_000, 0) == "$25k"
    assert [text.get_text() for text in ax.texts] == ["$22,975"]  # the final model's RMSE


def test_learning_curve_sorts_steps_and_formats_other_metrics() -> None:
    figure = plots.learning_curve({20: 0.91, 10: 0.85}, metric="val_r2")
    (ax,) = figure.axes
    assert list(ax.get_lines()[0].get_xdata()) == [10, 20]
    assert [text.get_text() for text in ax.texts] == ["0.91"]
    assert ax.yaxis.get_major_formatter()(0.5, 0) != "$0.5"


def test_learning_curve_is_readable_on_a_projector() -> None:
    (ax,) = plots.learning_curve(CURVE).axes
    sizes = [ax.title.get_fontsize(), ax.xaxis.label.get_fontsize(), ax.yaxis.label.get_fontsize()]
    sizes += [tick.label1.get_fontsize() for tick in ax.yaxis.get_major_ticks()]
    assert min(sizes) >= 14


def test_learning_curve_needs_points() -> None:
    with pytest.raises(ValueError, match="empty"):
        plots.learning_curve({})


FACTS_SCRIPT = textwrap.dedent(
    """
    import json
    import os
    import sys
    from pathlib import Path

    import mlflow
    import mlflow.sklearn
    import sklearn.metrics
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge

    facts = {}
    X = [[float(i), float(i % 3)] for i in range(40)]
    y = [2.0 * i + 1.0 for i in range(40)]
    fast = {"pip_requirements": ["scikit-learn"]}

    # where runs go with no tracking URI: mlflow.db here, or mlruns/ if it holds an experiment
    facts["default_uri"] = mlflow.get_tracking_uri().replace(os.getcwd(), "<cwd>")
    Path("old/mlruns/0").mkdir(parents=True)
    Path("old/mlruns/0/meta.yaml").write_text("name: Default")
    os.chdir("old")
    facts["default_uri_with_old_mlruns"] = mlflow.get_tracking_uri().replace(os.getcwd(), "<cwd>")
    os.chdir("..")

    # the file store: refused, unless MLFLOW_ALLOW_FILE_STORE=true
    try:
        mlflow.MlflowClient(tracking_uri="file:filestore").search_experiments()
        facts["file_store_refused"] = None
    except MlflowException as error:
        facts["file_store_refused"] = str(error)
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    mlflow.MlflowClient(tracking_uri="file:filestore").search_experiments()
    facts["file_store_with_opt_in"] = "ok"
    del os.environ["MLFLOW_ALLOW_FILE_STORE"]

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    mlflow.set_experiment("facts")

    # a deleted run is only marked deleted
    with mlflow.start_run(run_name="to-delete") as run:
        pass
    mlflow.delete_run(run.info.run_id)
    facts["deleted_stage"] = mlflow.get_run(run.info.run_id).info.lifecycle_stage
    facts["deleted_in_views"] = {
        ViewType.to_string(view): len(mlflow.search_runs(["1"], run_view_type=view))
        for view in (ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY)
    }

    # mlflow.user: whatever the client sends
    os.environ["MLFLOW_TRACKING_USERNAME"] = "someone-else"
    with mlflow.start_run(run_name="who") as run:
        pass
    del os.environ["MLFLOW_TRACKING_USERNAME"]
    facts["user_tag"] = mlflow.get_run(run.info.run_id).data.tags["mlflow.user"]

    # autologging: cloudpickle by default; a sklearn.metrics call after the fit is logged too
    import inspect
    parameters = inspect.signature(mlflow.sklearn.autolog).parameters
    facts["autolog_format"] = parameters["serialization_format"].default
    mlflow.sklearn.autolog(log_models=False)
    model = Ridge()
    with mlflow.start_run(run_name="autolog") as run:
        model.fit(X, y)
    X_val = X[:10]
    sklearn.metrics.root_mean_squared_error(y[:10], model.predict(X_val))
    mlflow.sklearn.autolog(disable=True)
    facts["autolog_metrics"] = sorted(mlflow.get_run(run.info.run_id).data.metrics)

    # skops: the default format; the trusted types live in the model's MLmodel file
    booster = HistGradientBoostingRegressor(max_iter=5).fit(X, y)
    trusted = [
        "functools.partial",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.utils.validation.check_array",
    ]
    mlflow.sklearn.save_model(booster, "booster", skops_trusted_types=trusted, **fast)
    flavor = mlflow.models.Model.load("booster").flavors["sklearn"]
    facts["saved_format"] = flavor["serialization_format"]
    facts["saved_trusted_types"] = flavor["skops_trusted_types"]
    facts["loads_by_default"] = type(mlflow.sklearn.load_model("booster")).__name__
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    try:
        mlflow.sklearn.load_model("booster")
        facts["refused_without_pickle"] = None
    except MlflowException as error:
        facts["refused_without_pickle"] = str(error)
    print(json.dumps(facts))
    """
)


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What the installed MLflow does, measured in a fresh process in an empty folder."""
    folder = tmp_path_factory.mktemp("nb01_facts")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_LOGGING_LEVEL="WARNING",
        HOME=str(folder),  # no ~/.mlflow/credentials of the machine's user
    )
    done = subprocess.run(
        [sys.executable, "-c", FACTS_SCRIPT],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_without_a_tracking_uri_runs_go_to_mlflow_db(facts: dict) -> None:
    assert facts["default_uri"] in ("sqlite:///mlflow.db", "sqlite:///<cwd>/mlflow.db")


def test_an_old_mlruns_folder_keeps_the_file_store(facts: dict) -> None:
    assert not facts["default_uri_with_old_mlruns"].startswith("sqlite")
    assert Path(facts["default_uri_with_old_mlruns"].removeprefix("file://")).name == "mlruns"


def test_the_file_store_is_refused_unless_allowed(facts: dict) -> None:
    assert "maintenance mode" in facts["file_store_refused"]
    assert "MLFLOW_ALLOW_FILE_STORE=true" in facts["file_store_refused"]
    assert facts["file_store_with_opt_in"] == "ok"


def test_a_deleted_run_is_only_marked_deleted(facts: dict) -> None:
    assert facts["deleted_stage"] == "deleted"
    assert facts["deleted_in_views"] == {"active_only": 0, "deleted_only": 1}


def test_mlflow_user_is_what_the_client_sends(facts: dict) -> None:
    assert facts["user_tag"] == "someone-else"


def test_autolog_pickles_and_logs_post_training_metrics(facts: dict) -> None:
    assert facts["autolog_format"] == "cloudpickle"
    assert "root_mean_squared_error_X_val" in facts["autolog_metrics"]
    assert "training_root_mean_squared_error" in facts["autolog_metrics"]


def test_skops_trusted_types_travel_with_the_model(facts: dict) -> None:
    assert facts["saved_format"] == "skops"
    assert "functools.partial" in facts["saved_trusted_types"]
    assert facts["loads_by_default"] == "HistGradientBoostingRegressor"


def test_allow_pickle_false_refuses_skops_models_too(facts: dict) -> None:
    refusal = facts["refused_without_pickle"]
    assert refusal and "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" in refusal and "skops" in refusal
