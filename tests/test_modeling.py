"""Tests of mlflow_series.modeling: the two models fit, score well, are deterministic."""

from __future__ import annotations

from mlflow_series import data, modeling

import numpy as np
import pandas as pd
import pytest
import skops.io
import threadpoolctl
from sklearn.compose import TransformedTargetRegressor


@pytest.fixture(scope="module")
def linear(split: data.Split) -> TransformedTargetRegressor:
    return modeling.make_linear_baseline().fit(split.X_train, split.y_train)


@pytest.fixture(scope="module")
def gbm(split: data.Split) -> TransformedTargetRegressor:
    return modeling.make_gradient_boosting().fit(split.X_train, split.y_train)


@pytest.fixture(scope="module")
def importances(gbm: TransformedTargetRegressor, split: data.Split) -> pd.Series:
    return modeling.feature_importance(gbm, split.X_val, split.y_val, n_repeats=2)


@pytest.fixture(params=["linear", "gbm"])
def model(request: pytest.FixtureRequest) -> TransformedTargetRegressor:
    return request.getfixturevalue(request.param)


def test_validation_metrics(linear, gbm, split: data.Split) -> None:
    linear_metrics = modeling.evaluate(linear, split.X_val, split.y_val)
    gbm_metrics = modeling.evaluate(gbm, split.X_val, split.y_val)
    assert linear_metrics["r2"] > 0.88
    assert gbm_metrics["r2"] > 0.88
    assert 15_000 < gbm_metrics["rmse"] < 30_000


def test_evaluate_returns_rounded_dollar_metrics(model, split: data.Split) -> None:
    metrics = modeling.evaluate(model, split.X_val, split.y_val)
    assert list(metrics) == ["rmse", "mae", "r2", "mape"]
    assert isinstance(metrics["rmse"], int) and isinstance(metrics["mae"], int)
    assert metrics["r2"] == round(metrics["r2"], 4)
    assert 0 < metrics["mae"] < metrics["rmse"]
    assert 0 < metrics["mape"] < 0.2


def test_evaluate_rejects_mismatched_inputs(linear, split: data.Split) -> None:
    with pytest.raises(ValueError, match="equal length"):
        modeling.evaluate(linear, split.X_val, split.y_val.iloc[:10])


def test_predictions_are_dollars(model, split: data.Split) -> None:
    predicted = model.predict(split.X_val)
    assert 100_000 < np.median(predicted) < 250_000
    assert (predicted > 0).all()


@pytest.mark.parametrize("make", [modeling.make_linear_baseline, modeling.make_gradient_boosting])
def test_refit_predicts_the_same(make, split: data.Split) -> None:
    first = make().fit(split.X_train, split.y_train).predict(split.X_val)
    second = make().fit(split.X_train, split.y_train).predict(split.X_val)
    assert np.array_equal(first, second)


def test_category_and_string_inputs_agree(model, ames: pd.DataFrame, split: data.Split) -> None:
    as_loaded = ames.loc[split.X_val.index, data.FEATURES]  # category and int64 dtypes
    assert np.allclose(model.predict(as_loaded), model.predict(split.X_val))


def test_unknown_category_is_handled(model, split: data.Split) -> None:
    X = split.X_val.head(3).copy()
    X["Neighborhood"] = "Atlantis"
    assert np.isfinite(model.predict(X)).all()


def test_gradient_boosting_params_pass_through() -> None:
    model = modeling.make_gradient_boosting(learning_rate=0.05, max_depth=3, max_iter=50)
    params = model.regressor.get_params()
    assert (params["learning_rate"], params["max_depth"], params["max_iter"]) == (0.05, 3, 50)
    assert params["early_stopping"] is False
    assert params["categorical_features"] == data.CATEGORICAL_FEATURES
    with pytest.raises(TypeError, match="unknown .* parameters: \\['learning_rat'\\]"):
        modeling.make_gradient_boosting(learning_rat=0.05)


def test_linear_baseline_alpha() -> None:
    assert modeling.make_linear_baseline(alpha=3.0).regressor.get_params()["ridge__alpha"] == 3.0
    with pytest.raises(ValueError, match="alpha"):
        modeling.make_linear_baseline(alpha=-1)


def test_feature_importance(importances: pd.Series, gbm, split: data.Split) -> None:
    assert set(importances.index) == set(data.FEATURES)
    assert importances.is_monotonic_decreasing
    assert importances.index[0] == "Gr_Liv_Area"
    assert importances.iloc[0] > 5_000  # dollars of RMSE
    again = modeling.feature_importance(gbm, split.X_val, split.y_val, n_repeats=2)
    assert again.equals(importances)


def test_skops_round_trip_needs_only_the_listed_types(model, split: data.Split) -> None:
    dumped = skops.io.dumps(model)
    assert set(skops.io.get_untrusted_types(data=dumped)) <= set(modeling.SKOPS_TRUSTED_TYPES)
    loaded = skops.io.loads(dumped, trusted=modeling.SKOPS_TRUSTED_TYPES)
    assert np.array_equal(loaded.predict(split.X_val), model.predict(split.X_val))


def test_gradient_boosting_runs_single_threaded() -> None:
    openmp = [info for info in threadpoolctl.threadpool_info() if info["user_api"] == "openmp"]
    assert openmp and all(info["num_threads"] == modeling.OPENMP_THREADS == 1 for info in openmp)
