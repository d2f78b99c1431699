"""Tests of mlflow_series.plots: each returns a Figure with the expected axes, labels, formats."""

from __future__ import annotations

import io
from types import SimpleNamespace

from mlflow_series import plots

import IPython
import numpy as np
import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter
from matplotlib._pylab_helpers import Gcf
from matplotlib.figure import Figure

ACTUAL = np.array([120_000.0, 180_000.0, 250_000.0, 310_000.0, 95_000.0])
PREDICTED = np.array([130_000.0, 170_000.0, 240_000.0, 330_000.0, 99_000.0])


@pytest.fixture
def runs() -> pd.DataFrame:
    """A frame shaped like mlflow.search_runs' output for a small hyperparameter search."""
    return pd.DataFrame(
        {
            "run_id": ["a1", "b2", "c3", "d4"],
            "metrics.rmse": [25_100.0, 23_300.0, 22_900.0, 24_000.0],
            "metrics.r2": [0.89, 0.90, 0.91, 0.895],
            "params.learning_rate": ["0.01", "0.1", "0.3", "1.0"],
            "params.max_depth": ["3", "None", "10", "3"],
            "tags.mlflow.runName": ["ridge", "gbm-1", "gbm-2", "gbm-3"],
        }
    )


def tick_text(axis, value: float) -> str:
    return axis.get_major_formatter()(value, 0)


def rendered(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def test_dollar_format() -> None:
    values = (250_000, 2_500, 23_500, 1_000, 800, 0, -12_000)
    assert [plots._dollars(v) for v in values] == [
        "$250k",
        "$2.5k",
        "$23.5k",
        "$1k",
        "$800",
        "$0",
        "-$12k",
    ]


def test_predicted_vs_actual() -> None:
    figure = plots.predicted_vs_actual(ACTUAL, PREDICTED, title="Validation")
    (ax,) = figure.axes
    assert isinstance(figure, Figure)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "Actual sale price",
        "Predicted sale price",
        "Validation",
    )
    assert tick_text(ax.xaxis, 200_000) == tick_text(ax.yaxis, 200_000) == "$200k"
    assert len(ax.collections[0].get_offsets()) == len(ACTUAL)
    assert tuple(figure.get_size_inches()) == plots.FIGSIZE
    assert rendered(figure).startswith(b"\x89PNG")


def test_residuals() -> None:
    figure = plots.residuals(pd.Series(ACTUAL), pd.Series(PREDICTED))
    (ax,) = figure.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted sale price", "Actual - predicted")
    offsets = ax.collections[0].get_offsets()
    assert np.allclose(offsets[:, 1], ACTUAL - PREDICTED)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="equal, non-zero lengths"):
        plots.residuals(ACTUAL, PREDICTED[:3])


def test_feature_importance_plot() -> None:
    importances = pd.Series(
        np.arange(15.0) * 1000, index=[f"f{i}" for i in range(15)], name="RMSE increase ($)"
    )
    figure = plots.feature_importance(importances, top=5)
    (ax,) = figure.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["f10", "f11", "f12", "f13", "f14"]  # the largest at the top
    assert ax.get_xlabel() == "RMSE increase ($)"
    assert tick_text(ax.xaxis, 4000) == "$4k"
    with pytest.raises(ValueError):
        plots.feature_importance(importances.iloc[:0])


def test_compare_runs(runs: pd.DataFrame) -> None:
    figure = plots.compare_runs(runs, "rmse", "tags.mlflow.runName")
    (ax,) = figure.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == list(runs["tags.mlflow.runName"])
    assert len(ax.patches) == 4
    assert [t.get_text() for t in ax.texts] == ["$25,100", "$23,300", "$22,900", "$24,000"]
    assert ax.get_xlabel() == "rmse"
    r2 = plots.compare_runs(runs, "metrics.r2", "runName")
    assert [t.get_text() for t in r2.axes[0].texts][0] == "0.89"


def test_compare_runs_errors(runs: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"no column 'mse'.*metrics\.rmse"):
        plots.compare_runs(runs, "mse", "tags.mlflow.runName")
    with pytest.raises(ValueError, match="empty"):
        plots.compare_runs(runs.iloc[:0], "rmse", "tags.mlflow.runName")


def test_search_grid(runs: pd.DataFrame) -> None:
    figure = plots.search_grid(runs, ["learning_rate", "params.max_depth"], "rmse")
    assert len(figure.axes) == 2
    rate, depth = figure.axes
    assert (rate.get_xlabel(), depth.get_xlabel(), rate.get_ylabel()) == (
        "learning_rate",
        "max_depth",
        "rmse",
    )
    # one position per value, numbers in numeric order first
    assert [t.get_text() for t in rate.get_xticklabels()] == ["0.01", "0.1", "0.3", "1.0"]
    assert [t.get_text() for t in depth.get_xticklabels()] == ["3", "10", "None"]
    best = rate.collections[1].get_offsets()
    assert np.allclose(best, [[2, 22_900.0]])  # lowest rmse, at learning_rate 0.3
    assert tick_text(rate.yaxis, 24_000) == "$24k"
    assert figure.get_suptitle() == "rmse of 4 trials (lower is better)"
    assert rendered(figure).startswith(b"\x89PNG")


def test_search_grid_best_r2_is_highest(runs: pd.DataFrame) -> None:
    figure = plots.search_grid(runs, ["learning_rate"], "metrics.r2")
    assert np.allclose(figure.axes[0].collections[1].get_offsets(), [[2, 0.91]])  # at 0.3


def test_no_figure_is_left_in_pyplot(runs: pd.DataFrame) -> None:
    plots.predicted_vs_actual(ACTUAL, PREDICTED)
    plots.search_grid(runs, ["learning_rate"], "rmse")
    assert Gcf.get_num_fig_managers() == 0


def test_figures_display_as_png_in_jupyter(monkeypatch: pytest.MonkeyPatch) -> None:
    shell = SimpleNamespace(display_formatter=DisplayFormatter())
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    figure = plots.residuals(ACTUAL, PREDICTED)
    shown, _ = shell.display_formatter.format(figure)
    assert {"image/png", "text/plain"} <= set(shown)


def test_price_overview_has_two_panels_in_dollars():
    df = pd.DataFrame(
        {"Sale_Price": [100_000.0, 200_000.0, 300_000.0], "Gr_Liv_Area": [800, 1500, 2400]}
    )
    figure = plots.price_overview(df)
    hist, scatter = figure.axes
    assert hist.get_xlabel() == "Sale price"
    assert scatter.get_ylabel() == "Sale price"
    assert len(scatter.collections[0].get_offsets()) == 3


def test_price_overview_names_a_missing_column():
    with pytest.raises(ValueError, match="Gr_Liv_Area"):
        plots.price_overview(pd.DataFrame({"Sale_Price": [1.0]}))


def test_text_is_readable_on_a_projector() -> None:
    figure = plots.predicted_vs_actual(ACTUAL, PREDICTED, title="Validation")
    rendered(figure)  # ticks are made when drawn
    (ax,) = figure.axes
    texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
    assert min(text.get_fontsize() for text in texts) >= 14
