"""Plumbing of notebook 05's promotion gate around MLflow's model validation.

The gate evaluates two registered versions into one run with `mlflow.models.evaluate`, each with
its own `metric_prefix` ("champion_", "challenger_") so that their metrics stay apart in that run.
`mlflow.validate_evaluation_results` compares a candidate with a baseline metric by metric *name*,
so the prefixes have to go before the comparison: `without_prefix` does that. When a check fails,
MLflow's `ModelValidationFailedException` prints the metrics in full (22966.348754..., whose last
digits change from one computer to another): `stable_message` rounds them for a notebook's output.
"""

from __future__ import annotations

import re

from mlflow.models import EvaluationResult

#: A number as MLflow's validation messages print a computed metric: Python's repr of a float,
#: with at least 5 decimals. The thresholds a person writes (0.02, 500.0, 30000) have fewer.
_COMPUTED = re.compile(r"-?\d+\.\d{5,}(?:e[-+]?\d+)?")


def without_prefix(result: EvaluationResult, prefix: str) -> EvaluationResult:
    """The same evaluation, with `prefix` removed from its metric names.

    Args:
        result: what `mlflow.models.evaluate(..., evaluator_config={"metric_prefix": prefix})`
            returned; its metrics are named prefix + MLflow's name, e.g.
            "champion_root_mean_squared_error" (in the target's units: dollars for RMSE).
        prefix: that metric_prefix, e.g. "champion_".

    Returns:
        An EvaluationResult holding only the metrics that carry the prefix, under MLflow's own
        names ("root_mean_squared_error"), with the same values, artifacts and run id: what
        `mlflow.validate_evaluation_results` compares.

    Raises:
        ValueError: no metric name starts with `prefix` (a typo, or a result evaluated with
            another metric_prefix).
    """
    metrics = {
        name.removeprefix(prefix): value
        for name, value in result.metrics.items()
        if prefix and name.startswith(prefix)
    }
    if not metrics:
        raise ValueError(
            f"no metric of this evaluation starts with {prefix!r} (its metrics: "
            f"{sorted(result.metrics)}): pass the metric_prefix given to mlflow.models.evaluate"
        )
    return EvaluationResult(metrics=metrics, artifacts=result.artifacts, run_id=result.run_id)


def stable_message(message: str | Exception, ndigits: int = -2) -> str:
    """MLflow's validation message with its computed metric values rounded.

    Args:
        message: a `ModelValidationFailedException` (its `message` is used) or its text.
        ndigits: as in round(): -2 rounds to the nearest 100 (dollars of an RMSE), 3 keeps three
            decimals (an R² score).

    Returns:
        The same text, each number printed with 5 or more decimals (a computed metric) replaced
        by its rounded value; the thresholds, written by a person with fewer decimals, and every
        word stay as MLflow wrote them.
    """
    text = getattr(message, "message", None) or str(message)

    def rounded(match: re.Match[str]) -> str:
        value = round(float(match.group()), ndigits) + 0.0  # + 0.0: no "-0"
        return f"{value:.0f}" if ndigits <= 0 else f"{value:.{ndigits}f}"

    return _COMPUTED.sub(rounded, text)
