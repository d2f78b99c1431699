"""Tests of notebook 05's figure: plots.version_rmse, each version's test RMSE, champion marked."""

from __future__ import annotations

import io

from mlflow_series import plots

import pandas as pd
import pytest
from matplotlib.figure import Figure

RMSE = pd.Series({3: 22_966.0, 1: 26_956.0, 2: 20_985.0})


def drawn(figure: Figure) -> Figure:
    """The figure after drawing it once (tick labels exist only then)."""
    figure.savefig(io.BytesIO(), format="png")
    return figure


def test_one_bar_per_version_in_version_order() -> None:
    figure = plots.version_rmse(RMSE, champion=2)
    (ax,) = figure.axes
    assert [label.get_text() for label in drawn(figure).axes[0].get_xticklabels()] == [
        "v1",
        "v2",
        "v3",
    ]
    assert [bar.get_height() for bar in ax.patches] == [26_956.0, 20_985.0, 22_966.0]
    assert ax.get_ylabel() == "Test RMSE"
    assert ax.yaxis.get_major_formatter()(25_000, 0) == "$25k"


def test_versions_sort_as_numbers() -> None:
    figure = plots.version_rmse(pd.Series({"10": 1.0, "9": 2.0, "2": 3.0}), champion="10")
    labels = [label.get_text() for label in drawn(figure).axes[0].get_xticklabels()]
    assert labels == ["v2", "v9", "v10"]


def test_the_champion_stands_out_and_verdicts_are_written() -> None:
    figure = plots.version_rmse(RMSE, champion="2", verdicts={2: "promoted", "3": "rejected"})
    (ax,) = figure.axes
    colors = [bar.get_facecolor() for bar in ax.patches]
    assert colors[1] != colors[0] and colors[0] == colors[2]  # only v2's bar differs
    texts = [text.get_text() for text in ax.texts]
    assert "$21k\npromoted" in texts and "$23k\nrejected" in texts and "$27k" in texts
    assert texts.count("champion") == 1


def test_text_is_readable_on_a_projector() -> None:
    figure = drawn(plots.version_rmse(RMSE, champion=1, verdicts={2: "promoted"}))
    (ax,) = figure.axes
    texts = [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
    texts += [*ax.get_xticklabels(), *ax.get_yticklabels()]
    assert min(text.get_fontsize() for text in texts) >= 14


@pytest.mark.parametrize(
    ("rmse", "champion", "message"),
    [(pd.Series(dtype=float), 1, "empty"), (RMSE, 4, "not among the versions")],
)
def test_refuses_what_it_cannot_draw(rmse: pd.Series, champion: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plots.version_rmse(rmse, champion=champion)
