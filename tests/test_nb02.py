"""What notebook 02 states or relies on: the databases MLflow accepts as a backend store, the tuned
gradient-boosting model it carries through the series, and its search figure in a 2 x 2 grid."""

from __future__ import annotations

import io

from mlflow_series import modeling, plots

import mlflow
import numpy as np
import pandas as pd
import pytest
from matplotlib._pylab_helpers import Gcf
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.uri import extract_db_type_from_uri

#: The search space of notebook 02 (its cell "The search space: 4 hyperparameters").
SPACE = {
    "learning_rate": [0.03, 0.05, 0.1, 0.2],
    "max_iter": [100, 200, 300],
    "max_leaf_nodes": [7, 15, 31],
    "l2_regularization": [0.0, 1.0, 10.0],
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


@pytest.mark.parametrize(
    "uri",
    ["oracle://mlflow@db.example.com/mlflow", "duckdb:///mlflow.duckdb", "cockroachdb://db/mlflow"],
)
def test_another_sqlalchemy_dialect_is_refused(uri: str, tmp_path):
    """Notebook 02 shows the Oracle case: the store refuses before it connects to anything."""
    dialect = uri.split(":")[0]
    with pytest.raises(mlflow.MlflowException) as raised:
        SqlAlchemyStore(uri, default_artifact_root=str(tmp_path))
    assert raised.value.message == (
        f"Invalid database engine: '{dialect}'. "
        "Supported database engines are postgresql, mysql, sqlite, mssql"
    )
    assert list(tmp_path.iterdir()) == []


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
