"""Tests of mlflow_series.monitoring: the PSI and the drift report, on small synthetic samples."""

from __future__ import annotations

import math

from mlflow_series import monitoring

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def frames(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference frame and a current one where only `area` has shifted."""
    size = 1000
    reference = pd.DataFrame(
        {
            "area": rng.normal(1500, 300, size),
            "rooms": rng.integers(2, 8, size).astype(float),
            "style": rng.choice(["ranch", "colonial", "split"], size, p=[0.5, 0.3, 0.2]),
        }
    )
    current = reference.copy()
    current["area"] = rng.normal(1900, 300, size)
    return reference, current


# --------------------------------------------------------------------------- the PSI


def test_identical_numeric_samples_give_zero(rng: np.random.Generator) -> None:
    sample = rng.normal(size=500)
    assert monitoring.population_stability_index(sample, sample) == pytest.approx(0, abs=1e-12)


def test_same_distribution_gives_small_psi(rng: np.random.Generator) -> None:
    psi = monitoring.population_stability_index(rng.normal(size=5000), rng.normal(size=5000))
    assert 0 <= psi < monitoring.PSI_WATCH


def test_shifted_distribution_crosses_the_alert_level(rng: np.random.Generator) -> None:
    psi = monitoring.population_stability_index(rng.normal(size=2000), rng.normal(1, 1, 2000))
    assert psi > monitoring.PSI_ALERT


def test_psi_grows_with_the_shift(rng: np.random.Generator) -> None:
    reference = rng.normal(size=2000)
    noise = rng.normal(size=2000)
    psis = [monitoring.population_stability_index(reference, noise + s) for s in (0.2, 0.5, 1.0)]
    assert psis == sorted(psis)


def test_values_outside_the_reference_range_count(rng: np.random.Generator) -> None:
    reference = rng.uniform(0, 1, 1000)
    psi = monitoring.population_stability_index(reference, reference + 10)
    assert psi > 1  # everything lands in the open top bin


def test_discrete_values_are_not_merged() -> None:
    # counts such as Full_Bath: quantile edges tie, each distinct value keeps its own bin
    reference = pd.Series([0] * 50 + [1] * 30 + [2] * 20)
    moved = pd.Series([0] * 20 + [1] * 30 + [2] * 50)
    assert monitoring.population_stability_index(reference, moved) > monitoring.PSI_ALERT


def test_identical_categorical_samples_give_zero() -> None:
    sample = pd.Series(["a", "b", "b", "c"] * 25)
    assert monitoring.population_stability_index(sample, sample) == pytest.approx(0, abs=1e-12)


def test_categorical_shift_is_measured() -> None:
    reference = pd.Series(["Normal"] * 80 + ["Partial"] * 20)
    current = pd.Series(["Normal"] * 50 + ["Partial"] * 50)
    expected = (0.5 - 0.8) * math.log(0.5 / 0.8) + (0.5 - 0.2) * math.log(0.5 / 0.2)
    psi = monitoring.population_stability_index(reference, current)
    assert psi == pytest.approx(expected)


def test_unseen_categories_give_a_large_finite_psi() -> None:
    reference = pd.Series(["a", "b"] * 50)
    current = pd.Series(["a", "b", "new"] * 30)
    psi = monitoring.population_stability_index(reference, current)
    assert math.isfinite(psi) and psi > monitoring.PSI_ALERT


def test_pandas_categories_and_booleans_are_categorical() -> None:
    reference = pd.Series(["x", "y"] * 10, dtype="category")
    assert monitoring.population_stability_index(reference, reference.astype(str)) == 0
    flags = pd.Series([True, False] * 10)
    assert not monitoring.is_numeric(flags)
    assert monitoring.population_stability_index(flags, ~flags) == pytest.approx(0, abs=1e-12)


def test_missing_values_get_their_own_bin() -> None:
    reference = pd.Series([1.0, 2.0, 3.0, 4.0] * 25)
    current = reference.copy()
    current[:50] = np.nan
    assert monitoring.population_stability_index(reference, current) > monitoring.PSI_ALERT
    labels = pd.Series(["a", None] * 50)
    assert monitoring.population_stability_index(labels, labels) == 0


@pytest.mark.parametrize("empty", ["expected", "actual"])
def test_empty_input_is_a_clear_error(empty: str) -> None:
    samples = {"expected": [1.0, 2.0], "actual": [1.0, 2.0], empty: []}
    with pytest.raises(ValueError, match=f"{empty} is empty"):
        monitoring.population_stability_index(samples["expected"], samples["actual"])


def test_mixed_kinds_and_bad_settings_are_errors() -> None:
    with pytest.raises(ValueError, match="compare numbers with numbers"):
        monitoring.population_stability_index([1.0, 2.0], ["a", "b"])
    with pytest.raises(ValueError, match="bins"):
        monitoring.population_stability_index([1.0, 2.0], [1.0, 2.0], bins=1)
    with pytest.raises(ValueError, match="epsilon"):
        monitoring.population_stability_index([1.0], [1.0], epsilon=0)


def test_psi_is_deterministic_and_ignores_order_and_index(rng: np.random.Generator) -> None:
    reference, current = rng.normal(size=800), rng.normal(0.3, 1, 600)
    first = monitoring.population_stability_index(reference, current)
    assert monitoring.population_stability_index(reference, current) == first
    shuffled = pd.Series(rng.permutation(current), index=rng.permutation(600) + 1000)
    assert monitoring.population_stability_index(reference, shuffled) == pytest.approx(first)


# --------------------------------------------------------------------------- the report


def test_report_flags_only_the_shifted_feature(frames) -> None:
    reference, current = frames
    report = monitoring.drift_report(reference, current)
    assert list(report.columns) == ["feature", "kind", "psi", "ks_pvalue", "drifted"]
    assert report["feature"].tolist()[0] == "area"
    assert report.set_index("feature")["drifted"].to_dict() == {
        "area": True,
        "rooms": False,
        "style": False,
    }
    assert report["psi"].is_monotonic_decreasing


def test_report_kinds_and_ks_pvalues(frames) -> None:
    report = monitoring.drift_report(*frames).set_index("feature")
    assert report["kind"].to_dict() == {
        "area": "numeric",
        "rooms": "numeric",
        "style": "categorical",
    }
    assert report.loc["area", "ks_pvalue"] < 0.001
    assert report.loc["rooms", "ks_pvalue"] == 1.0  # the same values
    assert math.isnan(report.loc["style", "ks_pvalue"])


def test_report_threshold_and_columns(frames) -> None:
    reference, current = frames
    report = monitoring.drift_report(reference, current, columns=["style", "area"], threshold=100)
    assert sorted(report["feature"]) == ["area", "style"]
    assert not report["drifted"].any()
    with pytest.raises(ValueError, match="threshold"):
        monitoring.drift_report(reference, current, threshold=0)


def test_report_names_missing_columns(frames) -> None:
    reference, current = frames
    with pytest.raises(ValueError, match="'current': \\['area'\\]"):
        monitoring.drift_report(reference, current.drop(columns="area"))
    with pytest.raises(ValueError, match="no columns"):
        monitoring.drift_report(reference, current, columns=[])


def test_report_is_deterministic(frames) -> None:
    first = monitoring.drift_report(*frames)
    pd.testing.assert_frame_equal(monitoring.drift_report(*frames), first)


def test_report_rejects_an_empty_frame(frames) -> None:
    reference, current = frames
    with pytest.raises(ValueError, match="actual is empty"):
        monitoring.drift_report(reference, current.iloc[:0])


def test_rule_of_thumb_levels_and_a_stricter_choice(frames) -> None:
    # the levels most often cited: 0.1 worth watching, 0.25 a significant shift
    assert (monitoring.PSI_WATCH, monitoring.PSI_ALERT) == (0.1, 0.25)
    reference, current = frames
    report = monitoring.drift_report(reference, current, columns=["style"])
    assert report["psi"].iloc[0] < monitoring.PSI_WATCH
    # a PSI between 0.2 and 0.25: flagged only by a team that alerts from 0.2
    moved = pd.Series(["Normal"] * 58 + ["Partial"] * 42)
    base = pd.Series(["Normal"] * 80 + ["Partial"] * 20)
    psi = monitoring.population_stability_index(base, moved)
    assert 0.2 < psi < monitoring.PSI_ALERT
    pair = (pd.DataFrame({"sale": base}), pd.DataFrame({"sale": moved}))
    assert not monitoring.drift_report(*pair)["drifted"].iloc[0]
    assert monitoring.drift_report(*pair, threshold=0.2)["drifted"].iloc[0]
