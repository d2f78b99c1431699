"""The two models of the case study, their metrics and feature importances.

Design: both models are scikit-learn estimators wrapped in a `TransformedTargetRegressor` with
`func=np.log, inverse_func=np.exp`. They fit on log(price), which suits a skewed target whose
errors grow with the price, but `fit` takes and `predict` returns dollars, so the metrics, the
plots and a served MLflow model all speak dollars and nobody has to remember to call np.exp.

Both accept the feature frames of `mlflow_series.data` with the categorical columns either as
pandas `category` (as `load_ames` gives them) or as plain strings (as a served model receives
them), and both are deterministic: two fits on the same data predict the same values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

from mlflow_series import config
from mlflow_series.data import CATEGORICAL_FEATURES, NUMERIC_FEATURES

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance
from sklearn.linear_model import Ridge
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    r2_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

#: Defaults of the gradient-boosting model; keyword arguments of make_gradient_boosting override.
GRADIENT_BOOSTING_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_iter": 200,
    "max_leaf_nodes": 15,
    "max_depth": None,
    "min_samples_leaf": 20,
    "l2_regularization": 0.0,
}
#: The gradient-boosting model carried through the series: the settings of the best trial of
#: notebook 02's hyperparameter search (a seeded Optuna TPE study of 16 trials; its trial 14 had
#: the lowest validation RMSE, $22,155, also the lowest of all 108 points of its space), which
#: notebook 02 registers as `ames-house-prices@challenger`. A cell of notebook 02 checks them
#: against the search's actual winner; notebook 05 fits
#: `make_gradient_boosting(**TUNED_GRADIENT_BOOSTING)` as its challenger.
TUNED_GRADIENT_BOOSTING: dict[str, Any] = {
    "l2_regularization": 1.0,
    "learning_rate": 0.1,
    "max_iter": 300,
    "max_leaf_nodes": 7,
}
#: OpenMP threads for the gradient boosting, set for the whole process when this module loads.
#: On a 2-core machine with a tracking server busy beside it, two spinning OpenMP threads made a
#: 0.15 s fit take up to 6 s; one thread is as fast when the machine is idle, and steady under load.
OPENMP_THREADS = 1
threadpool_limits(limits=OPENMP_THREADS, user_api="openmp")

#: Prefixes of the environment variables that decide how floats are computed, down to the last
#: bits of a prediction: the BLAS library's kernel and threads (OpenBLAS, its GotoBLAS names, MKL,
#: BLIS, Apple's vecLib), OpenMP's threads (GNU, Intel) and numpy's SIMD level (NPY_DISABLE_CPU_
#: FEATURES). None holds a credential. The names come from each library's documentation.
NUMERIC_ENV_PREFIXES = (
    "OPENBLAS_",
    "GOTO_",
    "MKL_",
    "BLIS_",
    "VECLIB_",
    "OMP_",
    "GOMP_",
    "KMP_",
    "NPY_",
)


def numeric_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The numeric settings (names starting with NUMERIC_ENV_PREFIXES) of an environment.

    Pass them to any process started with a scrubbed environment, so that it computes with the
    same BLAS kernel, thread counts and SIMD level as its parent. `environ` defaults to this
    process's environment; the result may be empty.
    """
    environ = os.environ if environ is None else environ
    return {key: value for key, value in environ.items() if key.startswith(NUMERIC_ENV_PREFIXES)}


def numeric_setup() -> dict[str, Any]:
    """How this process computes floats, as threadpoolctl and numpy report it.

    Returns a dict with "blas": one {"library", "kernel", "threads"} per BLAS library loaded
    (numpy and scipy each bring an OpenBLAS; "kernel" is OpenBLAS's architecture, e.g.
    "Haswell"), sorted by library file name, and "numpy_simd": the SIMD target numpy's float64
    exp runs on (e.g. "X86_V4"), the inverse of the models' log scale.
    """
    blas = [
        {
            "library": os.path.basename(pool["filepath"]),
            "kernel": pool.get("architecture"),
            "threads": pool["num_threads"],
        }
        for pool in threadpool_info()
        if pool["user_api"] == "blas"
    ]
    [exp_targets] = np.lib.introspect.opt_func_info("^exp$", "float64")["exp"].values()
    return {
        "blas": sorted(blas, key=lambda pool: pool["library"]),
        "numpy_simd": exp_targets["current"],
    }


#: Types that skops (MLflow's default format for scikit-learn models) does not trust by default
#: but the gradient-boosting model contains: pass them as `mlflow.sklearn.log_model(...,
#: skops_trusted_types=SKOPS_TRUSTED_TYPES)`. They are saved in the MLmodel file, so loading
#: (`mlflow.sklearn.load_model`, `mlflow.pyfunc.load_model`) needs nothing more.
SKOPS_TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
]

#: The packages a logged model of the series needs to load, pinned to the installed versions.
REQUIRED_PACKAGES = ("mlflow", "scikit-learn", "pandas", "numpy", "skops")


def log_model_speedups(sklearn: bool = True) -> dict[str, list[str]]:
    """The two optional `log_model` arguments that make logging fast (notebook 01 explains them).

    - ``pip_requirements``: REQUIRED_PACKAGES pinned to the installed versions, so MLflow does not
      infer them (inference loads the model in a subprocess: seconds per model instead of a
      tenth of one; `make bench` measures both).
    - ``skops_trusted_types`` (scikit-learn models only, ``sklearn=True``): SKOPS_TRUSTED_TYPES, the
      types of the gradient-boosting model that skops does not trust by default.

    Returns:
        keyword arguments for ``mlflow.sklearn.log_model`` (or, with ``sklearn=False``,
        ``mlflow.pyfunc.log_model``): ``log_model(model, name="model", **log_model_speedups())``.
    """
    options: dict[str, list[str]] = {
        "pip_requirements": [f"{package}=={version(package)}" for package in REQUIRED_PACKAGES]
    }
    if sklearn:
        options["skops_trusted_types"] = list(SKOPS_TRUSTED_TYPES)
    return options


def _on_log_scale(regressor: RegressorMixin) -> TransformedTargetRegressor:
    """Wrap a regressor so it fits on log(price) but takes and predicts dollars."""
    return TransformedTargetRegressor(regressor=regressor, func=np.log, inverse_func=np.exp)


def make_linear_baseline(
    alpha: float = 1.0,
    *,
    numeric: Sequence[str] = NUMERIC_FEATURES,
    categorical: Sequence[str] = CATEGORICAL_FEATURES,
) -> TransformedTargetRegressor:
    """Ridge regression on scaled numeric and one-hot categorical features, fit on log(price).

    The features are kept dense (``sparse_threshold=0``: about 2,900 x 300 values), so that Ridge
    solves directly (Cholesky) rather than with an iterative sparse solver whose result agrees
    across BLAS kernels only to about 2e-5 (prices off by up to $13 from one CPU to another).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    prepare = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(numeric)),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(categorical)),
        ],
        sparse_threshold=0,
    )
    return _on_log_scale(Pipeline([("prepare", prepare), ("ridge", Ridge(alpha=alpha))]))


def make_gradient_boosting(
    *, categorical: Sequence[str] = CATEGORICAL_FEATURES, **params: Any
) -> TransformedTargetRegressor:
    """HistGradientBoosting with native categorical splits, fit on log(price); params override."""
    unknown = sorted(set(params) - set(HistGradientBoostingRegressor().get_params()))
    if unknown:
        raise TypeError(f"unknown HistGradientBoostingRegressor parameters: {unknown}")
    settings = {
        **GRADIENT_BOOSTING_DEFAULTS,
        # by name, not "from_dtype": works for string columns (what a served model receives)
        "categorical_features": list(categorical),
        "early_stopping": False,  # no random validation split: the same fit every time
        "random_state": config.SEED,
        **params,
    }
    return _on_log_scale(HistGradientBoostingRegressor(**settings))


def evaluate(model: RegressorMixin, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """RMSE and MAE in whole dollars, R2 and MAPE (a fraction) to 4 digits, of model on X, y."""
    if len(X) != len(y) or len(y) == 0:
        raise ValueError(f"X and y must be non-empty and of equal length, got {len(X)}, {len(y)}")
    predicted = model.predict(X)
    return {
        "rmse": round(float(root_mean_squared_error(y, predicted))),
        "mae": round(float(mean_absolute_error(y, predicted))),
        "r2": round(float(r2_score(y, predicted)), 4),
        "mape": round(float(mean_absolute_percentage_error(y, predicted)), 4),
    }


def feature_importance(
    model: RegressorMixin, X: pd.DataFrame, y: pd.Series, n_repeats: int = 5
) -> pd.Series:
    """Permutation importance: how many dollars of RMSE each feature's shuffling adds, sorted."""
    result = permutation_importance(
        model,
        X,
        y,
        scoring="neg_root_mean_squared_error",
        n_repeats=n_repeats,
        random_state=config.SEED,
        n_jobs=1,
    )
    importances = pd.Series(result.importances_mean, index=X.columns, name="RMSE increase ($)")
    return importances.round(0).sort_values(ascending=False, kind="stable")
