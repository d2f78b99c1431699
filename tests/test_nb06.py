"""Facts notebook 06 states about the installed MLflow, and the figure it shows.

- MLflow's pandas dataset digest (8 hex characters) hashes only numeric and all-string columns:
  a change in a boolean column, or in a string column holding a missing value, leaves it as it
  was; the series' own `data_digest` tag sees both.
- The basic-auth app's permission levels and resource types, and the routes it leaves open.
- The basic-auth app refuses a password under 12 characters, for a new user and a changed one.
- A run's `mlflow.user` is whatever the client sends.
- `plots.psi_by_feature`: the PSI per feature with the watch and alert levels.
"""

from __future__ import annotations

import re
import warnings

from mlflow_series import data, monitoring, plots

import mlflow
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from mlflow.exceptions import MlflowException
from mlflow.tracking.context.default_context import DefaultRunContext

# MLflow 3.17's digest calls a pandas method with an argument pandas 4 will refuse (a deprecation
# for MLflow's developers; the notebook does not show it, as it warns from inside a library)
pytestmark = pytest.mark.filterwarnings("ignore:Starting with pandas version 4.0")


@pytest.fixture
def houses() -> pd.DataFrame:
    """A small frame shaped like the training data: numbers, text and a yes/no column."""
    return pd.DataFrame(
        {
            "Gr_Liv_Area": [1200.0, 1500.0, 1800.0, 2100.0],
            "Neighborhood": ["North_Ames", "Edwards", "Gilbert", "Sawyer"],
            "Central_Air": [True, True, False, True],
            "Sale_Price": [150_000.0, 180_000.0, 210_000.0, 250_000.0],
        }
    )


def mlflow_digest(frame: pd.DataFrame) -> str:
    return mlflow.data.from_pandas(frame).digest


# --------------------------------------------------------------------------- dataset digests


def test_mlflow_digest_is_eight_hex_characters(houses: pd.DataFrame) -> None:
    assert re.fullmatch(r"[0-9a-f]{8}", mlflow_digest(houses))


def test_mlflow_digest_sees_numbers_and_text(houses: pd.DataFrame) -> None:
    cheaper = houses.assign(Sale_Price=houses["Sale_Price"] - 1)
    renamed = houses.assign(Neighborhood=houses["Neighborhood"].str.upper())
    assert mlflow_digest(cheaper) != mlflow_digest(houses)
    assert mlflow_digest(renamed) != mlflow_digest(houses)


def test_mlflow_digest_ignores_a_boolean_column(houses: pd.DataFrame) -> None:
    flipped = houses.assign(Central_Air=~houses["Central_Air"])
    assert mlflow_digest(flipped) == mlflow_digest(houses)
    assert data.data_digest(flipped) != data.data_digest(houses)


def test_mlflow_digest_ignores_a_text_column_with_a_missing_value(houses: pd.DataFrame) -> None:
    gap = houses.assign(Neighborhood=["North_Ames", None, "Gilbert", "Sawyer"])
    moved = gap.assign(Neighborhood=["Somerset", None, "Somerset", "Somerset"])
    assert mlflow_digest(moved) == mlflow_digest(gap)
    assert data.data_digest(moved) != data.data_digest(gap)


def test_the_notebook_example_on_the_real_data() -> None:
    split = data.split_data(data.load_ames())
    train = split.X_train.assign(Sale_Price=split.y_train.astype("float64"))
    flags = train.assign(Central_Air=train["Central_Air"] == "Y")
    flipped = flags.assign(Central_Air=~flags["Central_Air"])
    assert mlflow_digest(flipped) == mlflow_digest(flags)
    assert data.data_digest(flipped) != data.data_digest(flags)


# --------------------------------------------------------------------------- users and auth


@pytest.fixture(scope="module")
def auth_app():
    """MLflow's basic-auth package (its import pulls in the server: a few seconds)."""
    with warnings.catch_warnings():
        # Starlette deprecates a module MLflow's server imports: a note for MLflow's developers
        warnings.filterwarnings("ignore", message="starlette.middleware.wsgi is deprecated")
        warnings.filterwarnings("ignore", message="The ``noload`` loader strategy is deprecated")
        import mlflow.server.auth as auth
        from mlflow.server.auth import permissions
    return auth, permissions


def test_permission_levels_and_resource_types(auth_app) -> None:
    _, permissions = auth_app
    assert set(permissions.RESOURCE_GRANTABLE_PERMISSIONS) == {
        "READ",
        "USE",
        "EDIT",
        "MANAGE",
        "DENY",
    }
    assert "NO_PERMISSIONS" in permissions.ALL_PERMISSIONS  # a default_permission, not a grant
    assert {
        "experiment",
        "registered_model",
        "prompt",
        "scorer",
        "gateway_secret",
        "gateway_endpoint",
        "gateway_model_definition",
        "mcp_server",
        "workspace",
        "run",
        "trace",
        "logged_model",
        "registered_model_version",
    } <= set(permissions.VALID_RESOURCE_TYPES)


@pytest.mark.parametrize(
    ("path", "open_"),
    [
        ("/health", True),
        ("/static-files/favicon.ico", True),
        ("/favicon.ico", True),
        ("/api/3.0/mlflow/server-info", True),
        ("/api/2.0/mlflow/experiments/search", False),
        ("/", False),
    ],
)
def test_routes_open_without_a_login(auth_app, path: str, open_: bool) -> None:
    auth, _ = auth_app
    assert auth.is_unprotected_route(path) is open_


# MLflow's migrations of the users' database use an Alembic setting Alembic now deprecates
@pytest.mark.filterwarnings("ignore:No path_separator found in configuration")
def test_passwords_need_12_characters(auth_app, tmp_path) -> None:
    """What the notebook's short-password cell shows, on the auth app's own store."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{tmp_path / 'basic_auth.db'}")
    with pytest.raises(MlflowException, match="at least 12 characters"):
        store.create_user("guest", "short-pw")  # 8 characters, as in the notebook
    store.create_user("guest", "twelve-chars")  # 12 characters: accepted
    with pytest.raises(MlflowException, match="at least 12 characters"):
        store.update_user("guest", password="eleven-char")
    assert store.authenticate_user("guest", "twelve-chars")


def test_mlflow_user_is_what_the_client_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-checked-here")
    assert DefaultRunContext().tags()["mlflow.user"] == "ana"


# --------------------------------------------------------------------------- the PSI figure


@pytest.fixture
def report() -> pd.DataFrame:
    """A drift report as monitoring.drift_report returns it, one feature per band."""
    return pd.DataFrame(
        {
            "feature": ["Mo_Sold", "Neighborhood", "Garage_Area", "Lot_Area"],
            "kind": ["numeric", "categorical", "numeric", "numeric"],
            "psi": [2.8, 0.137, 0.087, 0.01],
            "ks_pvalue": [0.0, float("nan"), 0.21, 0.9],
            "drifted": [True, False, False, False],
        }
    )


def test_psi_figure_levels_match_the_monitoring_rule() -> None:
    assert (monitoring.PSI_WATCH, monitoring.PSI_ALERT) == (0.1, 0.25)
    defaults = plots.psi_by_feature.__defaults__
    assert defaults[:2] == (monitoring.PSI_WATCH, monitoring.PSI_ALERT)


def test_psi_figure_bars_lines_and_colours(report: pd.DataFrame) -> None:
    figure = plots.psi_by_feature(report)
    (ax,) = figure.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["Lot_Area", "Garage_Area", "Neighborhood", "Mo_Sold"]  # largest on top
    widths = [bar.get_width() for bar in ax.patches]
    assert widths == pytest.approx([0.01, 0.087, 0.137, 2.8])
    colours = [to_hex(bar.get_facecolor()) for bar in ax.patches]
    assert colours == [to_hex(c) for c in ("tab:blue", "tab:blue", "tab:orange", "tab:red")]
    assert sorted(line.get_xdata()[0] for line in ax.get_lines()) == [0.1, 0.25]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["watch (0.1)", "alert (0.25)"]


def test_psi_figure_is_readable_on_a_projector(report: pd.DataFrame) -> None:
    (ax,) = plots.psi_by_feature(report).axes
    texts = [*ax.get_yticklabels(), *ax.get_xticklabels(), ax.xaxis.label, ax.title]
    texts += ax.get_legend().get_texts()
    assert min(text.get_fontsize() for text in texts) >= 14


def test_psi_figure_shows_the_top_features_and_the_alert_line(report: pd.DataFrame) -> None:
    (ax,) = plots.psi_by_feature(report, top=2).axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Neighborhood", "Mo_Sold"]
    assert ax.get_title() == "Drift per feature (top 2 of 4)"
    calm = report.assign(psi=[0.05, 0.04, 0.03, 0.01])
    (ax,) = plots.psi_by_feature(calm).axes
    assert ax.get_xlim()[1] > monitoring.PSI_ALERT  # the alert line stays in view


def test_psi_figure_rejects_bad_input(report: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="non-empty drift report"):
        plots.psi_by_feature(report.iloc[:0])
    with pytest.raises(ValueError, match="watch < alert"):
        plots.psi_by_feature(report, watch=0.3, alert=0.2)
