"""What notebook 02 states or relies on: the databases MLflow accepts as a backend store, its seeded
Optuna search, the system metrics of its parent run, the tuned gradient-boosting model it carries
through the series, and its search figure in a 2 x 2 grid."""

from __future__ import annotations

import io
import time
import warnings
from typing import Any

from mlflow_series import config, modeling, plots

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib._pylab_helpers import Gcf
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.utils.uri import extract_db_type_from_uri

#: SQLAlchemy 2.1 warns about a loader strategy of MLflow's own store code when that code is first
#: imported (here, not in a notebook: the tracking server imports it); not what these tests check.
SQLALCHEMY_NOLOAD = pytest.mark.filterwarnings(
    "ignore:The ``noload`` loader strategy:DeprecationWarning"
)

#: The values of notebook 02's search space (its cell `def suggest`), in the order suggested.
SPACE = {
    "learning_rate": [0.03, 0.05, 0.1, 0.2],
    "max_iter": [100, 200, 300],
    "max_leaf_nodes": [7, 15, 31],
    "l2_regularization": [0.0, 1.0, 10.0],
}


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """Notebook 02's search space, as its cell `def suggest` writes it."""
    return {
        "learning_rate": trial.suggest_categorical("learning_rate", [0.03, 0.05, 0.1, 0.2]),
        "max_iter": trial.suggest_categorical("max_iter", [100, 200, 300]),
        "max_leaf_nodes": trial.suggest_categorical("max_leaf_nodes", [7, 15, 31]),
        "l2_regularization": trial.suggest_categorical("l2_regularization", [0.0, 1.0, 10.0]),
    }


# --------------------------------------------------------------------------- backend stores


def test_mlflow_accepts_four_sql_databases_only():
    assert sorted(DATABASE_ENGINES) == ["mssql", "mysql", "postgresql", "sqlite"]


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:///mlflow.db",
        "postgresql+psycopg2://mlflow@db.example.com:5432/mlflow",
        "mysql+pymysql://mlflow@db.example.com/mlflow",
        "mssql+pyodbc://mlflow@db.example.com/mlflow",
    ],
)
def test_the_four_dialects_pass_the_backend_store_check(uri: str):
    assert extract_db_type_from_uri(uri) == uri.split(":")[0].split("+")[0]


@SQLALCHEMY_NOLOAD
@pytest.mark.parametrize(
    "uri",
    ["oracle://mlflow@db.example.com/mlflow", "duckdb:///mlflow.duckdb", "cockroachdb://db/mlflow"],
)
def test_another_sqlalchemy_dialect_is_refused(uri: str, tmp_path):
    """Notebook 02 shows the Oracle case: the store refuses before it connects to anything."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    dialect = uri.split(":")[0]
    with pytest.raises(mlflow.MlflowException) as raised:
        SqlAlchemyStore(uri, default_artifact_root=str(tmp_path))
    assert raised.value.message == (
        f"Invalid database engine: '{dialect}'. "
        "Supported database engines are postgresql, mysql, sqlite, mssql"
    )
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the Optuna search


def steps_from_tuned(trial: optuna.Trial) -> int:
    """A cheap stand-in for a fit: how many grid steps the values are from the tuned ones."""
    tuned = modeling.TUNED_GRADIENT_BOOSTING
    return sum(
        abs(SPACE[name].index(value) - SPACE[name].index(tuned[name]))
        for name, value in suggest(trial).items()
    )


def seeded_study(n_trials: int) -> optuna.Study:
    """The study of notebook 02's search cell, on the stand-in objective."""
    sampler = optuna.samplers.TPESampler(seed=config.SEED, n_startup_trials=5)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(steps_from_tuned, n_trials=n_trials)
    return study


@pytest.fixture
def quiet_optuna():
    """Optuna's verbosity as notebook 02 sets it (WARNING), restored afterwards."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(before)


def test_a_seeded_tpe_study_repeats_its_trials_and_warns_about_nothing(quiet_optuna):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ExperimentalWarning (or any other) fails the test
        first, second = seeded_study(16), seeded_study(16)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    for trial in first.trials:
        assert list(trial.params) == list(SPACE)  # the order of the notebook's table and figure
        for name, value in trial.params.items():
            assert value in SPACE[name], (name, value)


@SQLALCHEMY_NOLOAD
def test_the_parent_runs_system_metrics_are_the_names_notebook_02_shows(tmp_path, monkeypatch):
    # what mlflow.set_system_metrics_sampling_interval(...) sets, undone after the test
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri writes it: undone after
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(log_system_metrics=True) as run:
            time.sleep(1.0)  # a few samples; a run shorter than one interval logs none
        metrics = mlflow.get_run(run.info.run_id).data.metrics
    finally:
        mlflow.set_tracking_uri(before)
    assert sorted(key for key in metrics if key.startswith("system/")) == [
        "system/cpu_utilization_percentage",
        "system/disk_available_megabytes",
        "system/disk_usage_megabytes",
        "system/disk_usage_percentage",
        "system/network_receive_megabytes",
        "system/network_transmit_megabytes",
        "system/system_memory_usage_megabytes",
        "system/system_memory_usage_percentage",
    ]


# --------------------------------------------------------------------------- the tuned model


def test_the_tuned_settings_are_a_point_of_notebook_02s_search_space():
    tuned = modeling.TUNED_GRADIENT_BOOSTING
    assert set(tuned) == set(SPACE)
    for name, value in tuned.items():
        assert value in SPACE[name], name


def test_the_tuned_settings_make_the_gradient_boosting_model(split):
    model = modeling.make_gradient_boosting(**modeling.TUNED_GRADIENT_BOOSTING)
    regressor = model.regressor
    for name, value in modeling.TUNED_GRADIENT_BOOSTING.items():
        assert regressor.get_params()[name] == value, name
    model.fit(split.X_train, split.y_train)
    assert modeling.evaluate(model, split.X_val, split.y_val)["r2"] > 0.9


# --------------------------------------------------------------------------- the search figure


@pytest.fixture
def search() -> pd.DataFrame:
    """A frame shaped like notebook 02's search_runs: params as strings, a dollar metric."""
    rng = np.random.default_rng(0)
    rows = [
        {
            **{f"params.{name}": str(values[i % len(values)]) for name, values in SPACE.items()},
            "metrics.val_rmse": float(rng.integers(22_000, 25_000)),
            "metrics.val_r2": float(rng.uniform(0.89, 0.92)),
        }
        for i in range(12)
    ]
    return pd.DataFrame(rows)


def rendered(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def test_the_search_grid_is_two_by_two_and_readable_on_a_projector(search: pd.DataFrame):
    figure = plots.search_grid(search, list(SPACE), "val_rmse")
    assert rendered(figure).startswith(b"\x89PNG")  # ticks are made when drawn
    assert len(figure.axes) == 4
    positions = sorted(
        (ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start)
        for ax in figure.axes
    )
    assert positions == [(0, 0), (0, 1), (1, 0), (1, 1)]
    texts = []
    for ax in figure.axes:
        texts += [ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
    assert min(text.get_fontsize() for text in texts if text.get_text()) >= 14
    assert [ax.get_xlabel() for ax in figure.axes] == list(SPACE)
    assert [ax.get_ylabel() for ax in figure.axes] == ["val_rmse", "", "val_rmse", ""]
    rate = figure.axes[0]
    assert [t.get_text() for t in rate.get_xticklabels()] == ["0.03", "0.05", "0.1", "0.2"]
    assert rate.get_yticklabels()[0].get_text().startswith("$")
    best = int(search["metrics.val_rmse"].idxmin())
    assert np.allclose(rate.collections[1].get_offsets()[:, 1], [search["metrics.val_rmse"][best]])
    assert figure.get_suptitle() == "val_rmse of 12 trials (lower is better)"
    assert Gcf.get_num_fig_managers() == 0  # no pyplot figure left open


def test_the_search_grid_circles_the_highest_r2_and_leaves_no_empty_panel(search: pd.DataFrame):
    figure = plots.search_grid(search, ["learning_rate", "max_iter", "max_leaf_nodes"], "val_r2")
    assert len(figure.axes) == 3
    best = search["metrics.val_r2"].max()
    assert np.allclose(figure.axes[0].collections[1].get_offsets()[:, 1], [best])
    assert figure.get_suptitle().endswith("(higher is better)")


def test_the_search_grid_refuses_an_empty_search():
    with pytest.raises(ValueError, match="non-empty"):
        plots.search_grid(pd.DataFrame(), list(SPACE), "val_rmse")
