"""Helpers for the MLflow notebook series on the Ames house prices.

Importing it sets the environment that keeps MLflow's output quiet and stable (MLflow reads
those variables at each call, so it may be imported before or after).
"""

from mlflow_series.config import apply_quiet_env

apply_quiet_env()

__version__ = "0.1.0"
