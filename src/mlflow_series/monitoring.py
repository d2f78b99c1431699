"""Data drift checks for the monitoring part of the series: the PSI and a per-feature report.

The population stability index (PSI) compares the distribution of one feature in two samples, a
*reference* (the data a model learned from) and a *current* one (the data it now sees):

    PSI = sum over bins of (current share - reference share) * ln(current share / reference share)

It is 0 for identical distributions and grows with the shift. The rule of thumb most often cited,
from credit scoring: below 0.1 no real change, 0.1-0.25 worth watching, above 0.25 a significant
shift (`PSI_WATCH`, `PSI_ALERT`). Some teams alert from 0.2 already, a stricter choice: pass
`threshold=0.2` to `drift_report`. It is a convention, not a statistical test.

Numeric features are cut at the quantiles of the reference sample (deciles by default); the outer
bins are open, so values outside the reference range still count. Categorical features get one
bin per category seen in either sample, so a category the model never saw shows up as a large
PSI. Missing values get a bin of their own in both cases. Everything is deterministic: no
sampling, no random seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import ks_2samp

#: Rule-of-thumb PSI levels, the ones most often cited: above PSI_WATCH worth a look, above
#: PSI_ALERT a significant shift (0.2 is a stricter alert level some teams choose).
PSI_WATCH = 0.1
PSI_ALERT = 0.25
#: Smallest share a bin may have: an empty bin would otherwise make the PSI infinite.
EPSILON = 1e-4
#: The label of missing values when a categorical feature is binned.
MISSING = "<missing>"


def _series(values: ArrayLike, name: str) -> pd.Series:
    """The values as a Series with a plain index; a clear ValueError if there are none."""
    series = values.reset_index(drop=True) if isinstance(values, pd.Series) else pd.Series(values)
    if len(series) == 0:
        raise ValueError(f"{name} is empty: the PSI needs at least one value in each sample")
    return series


def is_numeric(values: pd.Series) -> bool:
    """True for numbers (booleans and pandas categories count as categorical)."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _numeric_counts(expected: pd.Series, actual: pd.Series, bins: int) -> np.ndarray:
    """Counts per quantile bin of expected (plus a missing-value bin), one row per sample."""
    reference = expected.dropna().to_numpy(dtype=float)
    inner = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique(np.quantile(reference, inner)) if reference.size else np.array([])
    missing_bin = len(edges) + 1
    counts = []
    for sample in (expected, actual):
        values = sample.to_numpy(dtype=float, na_value=np.nan)
        index = np.where(
            np.isnan(values), missing_bin, np.searchsorted(edges, values, side="right")
        )
        counts.append(np.bincount(index, minlength=missing_bin + 1))
    return np.array(counts)


def _categorical_counts(expected: pd.Series, actual: pd.Series) -> np.ndarray:
    """Counts per category seen in either sample (missing values as MISSING), one row each."""
    labels = [
        sample.astype(object).where(sample.notna(), MISSING).astype(str)
        for sample in (expected, actual)
    ]
    categories = sorted(set(labels[0]) | set(labels[1]))
    return np.array(
        [pd.Categorical(label, categories=categories).value_counts().to_numpy() for label in labels]
    )


def population_stability_index(
    expected: ArrayLike, actual: ArrayLike, bins: int = 10, *, epsilon: float = EPSILON
) -> float:
    """The PSI of `actual` against the reference sample `expected` (0 = same distribution).

    Args:
        expected: the reference sample, e.g. a feature's training values.
        actual: the sample to compare with it, e.g. the same feature in new data.
        bins: quantile bins for numeric data (fewer when the reference has ties, e.g. counts).
        epsilon: the floor of each bin's share, so an empty bin gives a large, finite PSI.
    """
    if not isinstance(bins, int | np.integer) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be between 0 and 1, got {epsilon!r}")
    expected, actual = _series(expected, "expected"), _series(actual, "actual")
    if is_numeric(expected) != is_numeric(actual):
        raise ValueError(
            f"expected is {expected.dtype} and actual is {actual.dtype}: compare numbers with "
            "numbers and categories with categories"
        )
    if is_numeric(expected):
        counts = _numeric_counts(expected, actual, bins)
    else:
        counts = _categorical_counts(expected, actual)
    shares = np.maximum(counts / counts.sum(axis=1, keepdims=True), epsilon)
    reference, current = shares
    return float(np.sum((current - reference) * np.log(current / reference)))


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str] | None = None,
    threshold: float = PSI_ALERT,
    bins: int = 10,
) -> pd.DataFrame:
    """One row per feature: its kind, PSI, KS p-value (numeric only) and whether it drifted.

    A feature is flagged `drifted` when its PSI reaches `threshold`. The two-sample
    Kolmogorov-Smirnov p-value is given for numeric features as a second opinion: with
    hundreds of rows it turns small even for shifts too small to matter, which is why the
    flag uses the PSI, a measure of size. Rows are sorted by PSI, largest first.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    columns = list(reference.columns if columns is None else columns)
    if not columns:
        raise ValueError("no columns to compare")
    missing = {
        name: [c for c in columns if c not in frame.columns]
        for name, frame in (("reference", reference), ("current", current))
    }
    if any(missing.values()):
        raise ValueError(f"columns missing from the data frames: {missing}")
    rows = []
    for column in columns:
        expected, actual = reference[column], current[column]
        numeric = is_numeric(expected)
        p_value = np.nan
        if numeric and expected.notna().any() and actual.notna().any():
            p_value = float(ks_2samp(expected.dropna(), actual.dropna()).pvalue)
        psi = population_stability_index(expected, actual, bins)
        rows.append(
            {
                "feature": column,
                "kind": "numeric" if numeric else "categorical",
                "psi": round(psi, 3),
                "ks_pvalue": round(p_value, 4),
                "drifted": psi >= threshold,
            }
        )
    report = pd.DataFrame(rows).sort_values(
        ["psi", "feature"], ascending=[False, True], kind="stable"
    )
    return report.reset_index(drop=True)
