"""Helpers for the MLflow notebook series on the Ames house prices.

Import it before MLflow: it sets the environment that keeps MLflow's output quiet and stable.
"""

from mlflow_series.config import apply_quiet_env

apply_quiet_env()

__version__ = "0.1.0"
