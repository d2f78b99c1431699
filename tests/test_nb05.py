"""Tests of notebook 05's figure (plots.version_rmse) and of its promotion gate (MLflow's model
validation, with promotion.without_prefix and promotion.stable_message)."""

from __future__ import annotations

import io

from mlflow_series import plots, promotion

import mlflow
import pandas as pd
import pytest
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from mlflow.models import EvaluationResult, MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException

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


# --------------------------------------------------------------------------- the promotion gate
# Notebook 05's gate: mlflow.models.evaluate with a metric_prefix per model, the prefix removed
# (promotion.without_prefix), then mlflow.validate_evaluation_results with a MetricThreshold.

RMSE_NAME = "root_mean_squared_error"


def evaluation(prefix: str, rmse: float, **more: float) -> EvaluationResult:
    """An EvaluationResult as mlflow.models.evaluate returns it with metric_prefix=prefix."""
    metrics = {f"{prefix}{RMSE_NAME}": rmse, f"{prefix}r2_score": 0.9}
    metrics |= {f"{prefix}{name}": value for name, value in more.items()}
    return EvaluationResult(metrics=metrics, artifacts={}, run_id="run-1")


def validate(candidate_rmse: float, baseline_rmse: float, **threshold: float) -> None:
    """The gate's call: the challenger's RMSE against the champion's, lower is better."""
    rule = {RMSE_NAME: MetricThreshold(greater_is_better=False, **threshold)}
    candidate = promotion.without_prefix(evaluation("challenger_", candidate_rmse), "challenger_")
    baseline = promotion.without_prefix(evaluation("champion_", baseline_rmse), "champion_")
    mlflow.validate_evaluation_results(rule, candidate, baseline)


def test_without_prefix_gives_mlflow_names_back() -> None:
    result = promotion.without_prefix(evaluation("champion_", 21_000.0, mean=1.0), "champion_")
    assert result.metrics == {RMSE_NAME: 21_000.0, "r2_score": 0.9, "mean": 1.0}
    assert result.run_id == "run-1" and result.artifacts == {}
    mixed = EvaluationResult(metrics={"champion_mae": 1.0, "challenger_mae": 2.0}, artifacts={})
    assert promotion.without_prefix(mixed, "challenger_").metrics == {"mae": 2.0}


@pytest.mark.parametrize("prefix", ["challenger_", ""])
def test_without_prefix_refuses_a_prefix_no_metric_has(prefix: str) -> None:
    with pytest.raises(ValueError, match="metric_prefix given to mlflow.models.evaluate"):
        promotion.without_prefix(evaluation("champion_", 21_000.0), prefix)


def test_gate_passes_a_clear_winner() -> None:
    validate(21_000.0, 27_000.0, min_relative_change=0.02)  # 22% lower: no exception
    validate(980.0, 1_000.0, min_relative_change=0.02)  # exactly 2% lower passes


def test_min_relative_change_is_a_fraction_of_the_baseline() -> None:
    with pytest.raises(ModelValidationFailedException, match="minimum relative change"):
        validate(990.0, 1_000.0, min_relative_change=0.02)  # 1% lower: not enough
    with pytest.raises(MlflowException, match="floating point number"):
        MetricThreshold(min_relative_change=2, greater_is_better=False)  # not "2 percent"
    with pytest.raises(MlflowException, match="between 0 and 1"):
        MetricThreshold(min_relative_change=2.0, greater_is_better=False)


def test_gate_fails_a_worse_challenger_on_relative_change() -> None:
    with pytest.raises(ModelValidationFailedException) as failure:
        validate(22_966.348754, 20_985.123456, min_relative_change=0.02)
    assert promotion.stable_message(failure.value) == (
        f"Metric {RMSE_NAME} minimum relative change check failed: "
        f"candidate model {RMSE_NAME} = 23000, baseline model {RMSE_NAME} = 21000, "
        f"{RMSE_NAME} minimum relative change threshold = 0.02."
    )


def test_gate_fails_on_absolute_change_in_dollars() -> None:
    validate(20_400.0, 21_000.0, min_absolute_change=500.0)  # $600 lower: passes
    with pytest.raises(ModelValidationFailedException, match="minimum absolute change"):
        validate(20_600.0, 21_000.0, min_absolute_change=500.0)  # $400 lower: fails


def test_gate_fails_above_the_ceiling_whatever_the_champion() -> None:
    validate(29_000.0, 40_000.0, threshold=30_000.0)
    with pytest.raises(ModelValidationFailedException, match="value threshold check failed"):
        validate(31_000.0, 40_000.0, threshold=30_000.0, min_relative_change=0.02)


def test_stable_message_rounds_computed_values_only() -> None:
    message = "a = 22966.348754123, b = -0.123456789, threshold = 0.02, ceiling = 30000.0."
    rounded = "a = 23000, b = 0, threshold = 0.02, ceiling = 30000.0."
    assert promotion.stable_message(message) == rounded
    assert promotion.stable_message(message, ndigits=3).startswith("a = 22966.349, b = -0.123")
    assert promotion.stable_message("r2 = 1.23456789e-07") == "r2 = 0"
    assert promotion.stable_message(MlflowException("x = 1234.567891")) == "x = 1200"
