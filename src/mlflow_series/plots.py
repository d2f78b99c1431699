"""The figures of the case study: predictions, residuals, importances and comparisons of runs.

Every function returns a `matplotlib.figure.Figure` built without pyplot, so no figure is left
open in pyplot's registry and nothing needs closing: log it with `mlflow.log_figure(fig,
"name.png")`, save it with `fig.savefig(...)`, or show it in Jupyter as a cell's last expression
(without a trailing `;`, which hides it). Dollar axes are labelled $250k.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from numpy.typing import ArrayLike

FIGSIZE = (7.0, 4.5)
#: Text sizes readable on a projector from the back of a room: 14 pt at the least. Applied to
#: matplotlib's defaults when this module is imported (the series' figures are all made here).
PROJECTOR_FONTS = {
    "font.size": 14,
    "axes.titlesize": 16,
    "axes.labelsize": 14,
    "xtick.labelsize": 14,
    "ytick.labelsize": 14,
    "legend.fontsize": 14,
    "figure.titlesize": 16,
}
matplotlib.rcParams.update(PROJECTOR_FONTS)
#: Metric names (or their endings, as in "val_rmse") measured in dollars.
DOLLAR_METRICS = ("rmse", "mae")
POINT_STYLE = {"s": 12, "alpha": 0.5, "edgecolors": "none"}


def _dollars(value: float, _position: int | None = None) -> str:
    """Format a tick in dollars: $250k or $2.5k from a thousand on, $800 below."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 1000:
        return f"{sign}${value:,.0f}"
    thousands = f"{value / 1000:,.1f}".removesuffix(".0")
    return f"{sign}${thousands}k"


DOLLAR_FORMAT = FuncFormatter(_dollars)


def _enable_notebook_display() -> None:
    """In Jupyter, show a returned Figure as a PNG, as pyplot's inline backend would."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:  # no IPython: nothing to display to
        return
    shell = get_ipython()
    if shell is None:
        return
    formatters = shell.display_formatter.formatters
    if any(Figure in formatter.type_printers for formatter in formatters.values()):
        return  # a format is already chosen (e.g. by %matplotlib inline): keep it
    png = functools.partial(print_figure, fmt="png", base64=True)
    formatters["image/png"].for_type(Figure, png)


def _figure(
    ncols: int = 1, figsize: tuple[float, float] = FIGSIZE, sharey: bool = False
) -> tuple[Figure, list[Axes]]:
    """A pyplot-free figure with ncols axes in a row, laid out without overlaps."""
    _enable_notebook_display()
    figure = Figure(figsize=figsize, layout="constrained")
    axes = figure.subplots(1, ncols, squeeze=False, sharey=sharey)[0]
    return figure, list(axes)


def _aligned(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both series as float arrays, checked to be non-empty and of equal length."""
    actual, predicted = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if actual.shape != predicted.shape or actual.size == 0:
        raise ValueError(
            f"y_true and y_pred: need equal, non-zero lengths, got {actual.shape}, "
            f"{predicted.shape}"
        )
    return actual, predicted


def price_overview(df: pd.DataFrame) -> Figure:
    """Two panels: the distribution of sale prices, and price against living area."""
    for column in ("Sale_Price", "Gr_Liv_Area"):
        if column not in df.columns:
            raise ValueError(f"price_overview needs a {column!r} column (use data.load_ames())")
    figure, (hist, scatter) = _figure(ncols=2, figsize=(12.0, 4.5))
    hist.hist(df["Sale_Price"], bins=50)
    hist.set(xlabel="Sale price", ylabel="Houses", title="Sale prices")
    hist.xaxis.set_major_formatter(DOLLAR_FORMAT)
    scatter.scatter(df["Gr_Liv_Area"], df["Sale_Price"], **POINT_STYLE)
    scatter.set(xlabel="Living area above ground (sq ft)", ylabel="Sale price")
    scatter.set_title("Bigger houses sell for more")
    scatter.yaxis.set_major_formatter(DOLLAR_FORMAT)
    return figure


def predicted_vs_actual(
    y_true: ArrayLike, y_pred: ArrayLike, title: str = "Predicted vs actual price"
) -> Figure:
    """Scatter of predicted against actual sale prices, with the line of perfect predictions."""
    actual, predicted = _aligned(y_true, y_pred)
    figure, (ax,) = _figure()
    ax.scatter(actual, predicted, **POINT_STYLE)
    low, high = min(actual.min(), predicted.min()), max(actual.max(), predicted.max())
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="perfect prediction")
    ax.set(xlabel="Actual sale price", ylabel="Predicted sale price", title=title)
    ax.xaxis.set_major_formatter(DOLLAR_FORMAT)
    ax.yaxis.set_major_formatter(DOLLAR_FORMAT)
    ax.legend(loc="upper left")
    return figure


def residuals(y_true: ArrayLike, y_pred: ArrayLike, title: str = "Residuals") -> Figure:
    """Scatter of residuals (actual - predicted) against predicted prices, around zero."""
    actual, predicted = _aligned(y_true, y_pred)
    figure, (ax,) = _figure()
    ax.scatter(predicted, actual - predicted, **POINT_STYLE)
    ax.axhline(0, color="black", linewidth=1)
    ax.set(xlabel="Predicted sale price", ylabel="Actual - predicted", title=title)
    ax.xaxis.set_major_formatter(DOLLAR_FORMAT)
    ax.yaxis.set_major_formatter(DOLLAR_FORMAT)
    return figure


def feature_importance(importances: pd.Series, top: int = 10, dollars: bool = True) -> Figure:
    """Horizontal bars of the top features, the most important on top."""
    if importances.empty or top < 1:
        raise ValueError("need a non-empty importances Series and top >= 1")
    shown = importances.sort_values(ascending=False).head(top).iloc[::-1]
    figure, (ax,) = _figure()
    ax.barh([str(name) for name in shown.index], shown.to_numpy())
    ax.set(xlabel=str(importances.name or "importance"), title=f"Top {len(shown)} features")
    if dollars:
        ax.xaxis.set_major_formatter(DOLLAR_FORMAT)
    return figure


def _column(df: pd.DataFrame, name: str, prefixes: Sequence[str]) -> str:
    """The column of df called name, or prefix + name (as in mlflow.search_runs' 'metrics.rmse')."""
    for candidate in [name, *(prefix + name for prefix in prefixes)]:
        if candidate in df.columns:
            return candidate
    raise ValueError(
        f"no column {name!r} (nor with prefixes {list(prefixes)}); columns: {list(df.columns)}"
    )


def _is_dollars(metric: str) -> bool:
    """Whether a metric (e.g. 'metrics.val_rmse') is in dollars."""
    return metric.split(".")[-1].lower().endswith(DOLLAR_METRICS)


def compare_runs(df: pd.DataFrame, metric: str, label_col: str = "tags.mlflow.runName") -> Figure:
    """Bars of one metric per run, labelled by label_col (mlflow.search_runs' columns work)."""
    if df.empty:
        raise ValueError("no runs to compare: the data frame is empty")
    metric_col = _column(df, metric, ["metrics."])
    label = _column(df, label_col, ["tags.", "params.", "tags.mlflow."])
    values = pd.to_numeric(df[metric_col], errors="coerce").to_numpy()
    figure, (ax,) = _figure()
    bars = ax.barh([str(v) for v in df[label]], values)
    formatter = "${:,.0f}".format if _is_dollars(metric_col) else "{:.4g}".format
    ax.bar_label(bars, labels=[formatter(v) if np.isfinite(v) else "" for v in values], padding=3)
    ax.invert_yaxis()  # first run on top, as in the table
    ax.set(xlabel=metric_col.removeprefix("metrics."), title="Runs compared")
    ax.margins(x=0.15)
    if _is_dollars(metric_col):
        ax.xaxis.set_major_formatter(DOLLAR_FORMAT)
    return figure


def _level_order(level: str) -> tuple[bool, float, str]:
    """Sort key for parameter values: numbers in numeric order first, then the rest by name."""
    try:
        return (False, float(level), level)
    except ValueError:
        return (True, 0.0, level)


def learning_curve(curve: dict[int, float], metric: str = "val_rmse") -> Figure:
    """A model's learning curve: the metric (e.g. the validation RMSE) after each number of trees.

    Args:
        curve: {number of trees (the step): metric value}, as notebook 01 logs it with `step=`.
        metric: the metric's name, for the axis label; a name ending in rmse or mae is in dollars.
    """
    if not curve:
        raise ValueError("no points: the curve is empty")
    steps = sorted(curve)
    values = np.array([curve[step] for step in steps], dtype=float)
    figure, (ax,) = _figure()
    ax.plot(steps, values, marker="o")
    last = values[-1]
    label = f"${last:,.0f}" if _is_dollars(metric) else f"{last:.4g}"
    ax.annotate(label, (steps[-1], last), xytext=(0, 10), textcoords="offset points", ha="right")
    ax.set(xlabel="Trees (the step)", ylabel=metric, title="Learning curve")
    if _is_dollars(metric):
        ax.yaxis.set_major_formatter(DOLLAR_FORMAT)
    return figure


def version_rmse(
    rmse: pd.Series, champion: int | str, verdicts: dict[str, str] | None = None
) -> Figure:
    """Bars of each registered version's test RMSE, the version `champion` points at highlighted.

    Args:
        rmse: test RMSE in dollars, indexed by version number (int or str, e.g. from a gate's runs).
        champion: the version the `champion` alias points at; it must be in `rmse`.
        verdicts: {version: the gate's verdict ("promoted", "rejected")}, written under the
            bar's value; versions without one get none.
    """
    if rmse.empty:
        raise ValueError("no versions: the rmse Series is empty")
    values = rmse.rename(index=str)
    values = values[sorted(values.index, key=_level_order)]  # v2 before v10
    champion, verdicts = str(champion), {str(k): v for k, v in (verdicts or {}).items()}
    if champion not in values.index:
        raise ValueError(f"champion {champion!r} is not among the versions {list(values.index)}")
    colors = ["tab:orange" if version == champion else "tab:gray" for version in values.index]
    figure, (ax,) = _figure()
    bars = ax.bar([f"v{version}" for version in values.index], values.to_numpy(), color=colors)
    labels = [
        "\n".join(filter(None, [_dollars(value), verdicts.get(version)]))
        for version, value in values.items()
    ]
    ax.bar_label(bars, labels=labels, padding=3)
    ax.bar_label(
        bars,
        labels=["champion" if v == champion else "" for v in values.index],
        label_type="center",
        color="white",
        fontweight="bold",
    )
    ax.set(xlabel="Registered version", ylabel="Test RMSE", title="Each version's test RMSE")
    ax.yaxis.set_major_formatter(DOLLAR_FORMAT)
    ax.margins(y=0.3)
    return figure


def _search_panel(ax: Axes, values: pd.Series, y: np.ndarray, best: int) -> None:
    """One panel of search_grid: the metric against one hyperparameter's values, evenly spaced."""
    levels = sorted(values.astype(str).unique(), key=_level_order)
    positions = np.array([levels.index(value) for value in values.astype(str)], dtype=float)
    ax.scatter(positions, y, s=70, alpha=0.7, label="one trial")
    best_style = {"s": 300, "facecolors": "none", "edgecolors": "red", "linewidths": 2.5}
    ax.scatter(positions[best], y[best], label="best trial", **best_style)
    ax.set_xticks(range(len(levels)), levels)
    ax.set_xlim(-0.5, len(levels) - 0.5)
    ax.grid(axis="y", alpha=0.3)


def search_grid(df: pd.DataFrame, params: Sequence[str], metric: str, ncols: int = 2) -> Figure:
    """A hyperparameter search at a glance, in a grid readable on a projector (2 x 2 for four).

    One panel per hyperparameter: the metric of every trial against the values tried for that
    hyperparameter (evenly spaced, as in a grid), the best trial circled in red; the panels share
    the metric's axis. `df` is `mlflow.search_runs`' frame ("params." and "metrics." columns work).
    """
    if df.empty or not params or ncols < 1:
        raise ValueError("need a non-empty data frame of runs, a parameter and ncols >= 1")
    metric_col = _column(df, metric, ["metrics."])
    y = pd.to_numeric(df[metric_col], errors="coerce").to_numpy(dtype=float)
    if np.isnan(y).all():
        raise ValueError(f"column {metric_col!r} has no numeric values")
    name = metric_col.removeprefix("metrics.")
    higher_is_better = name.lower().endswith("r2")
    best = int(np.nanargmax(y) if higher_is_better else np.nanargmin(y))
    nrows = -(-len(params) // ncols)
    _enable_notebook_display()
    figure = Figure(figsize=(6.0 * ncols, 4.2 * nrows + 0.6), layout="constrained")
    axes = list(figure.subplots(nrows, ncols, sharey=True, squeeze=False).ravel())
    for ax in axes[len(params) :]:
        figure.delaxes(ax)  # an odd number of hyperparameters leaves a cell empty
    for index, (ax, param) in enumerate(zip(axes, params, strict=False)):
        _search_panel(ax, df[_column(df, param, ["params."])], y, best)
        ax.set_xlabel(param.removeprefix("params."))
        if index % ncols == 0:
            ax.set_ylabel(name)
        if _is_dollars(metric_col):
            ax.yaxis.set_major_formatter(DOLLAR_FORMAT)
    axes[0].legend(loc="best")
    better = "higher" if higher_is_better else "lower"
    figure.suptitle(f"{name} of {len(df)} trials ({better} is better)")
    return figure


def psi_by_feature(
    report: pd.DataFrame, watch: float = 0.1, alert: float = 0.25, top: int | None = 12
) -> Figure:
    """Horizontal bars of each feature's PSI (largest on top), with the watch and alert levels.

    Args:
        report: `monitoring.drift_report`'s frame (its "feature" and "psi" columns).
        watch, alert: the PSI levels drawn as vertical lines (`monitoring.PSI_WATCH`,
            `monitoring.PSI_ALERT`); a bar at or above `alert` is red, at or above `watch` orange.
        top: how many features to show, the largest PSIs; None for all.
    """
    if report.empty or not {"feature", "psi"} <= set(report.columns):
        raise ValueError("need a non-empty drift report with 'feature' and 'psi' columns")
    if not 0 < watch < alert:
        raise ValueError(f"need 0 < watch < alert, got watch={watch}, alert={alert}")
    ordered = report.sort_values(["psi", "feature"], ascending=[False, True], kind="stable")
    shown = ordered.head(top) if top else ordered
    psi = shown["psi"].to_numpy(dtype=float)[::-1]  # barh draws bottom-up: largest on top
    colors = ["tab:red" if v >= alert else "tab:orange" if v >= watch else "tab:blue" for v in psi]
    figure, (ax,) = _figure(figsize=(8.0, 0.38 * len(shown) + 1.8))
    ax.barh([str(name) for name in shown["feature"]][::-1], psi, color=colors)
    ax.axvline(watch, color="tab:orange", linestyle="--", linewidth=2, label=f"watch ({watch:g})")
    ax.axvline(alert, color="tab:red", linestyle="--", linewidth=2, label=f"alert ({alert:g})")
    ax.set_xlim(0, max(alert * 1.25, float(np.nanmax(psi)) * 1.1))
    of = f" (top {len(shown)} of {len(report)})" if len(shown) < len(report) else ""
    ax.set(xlabel="PSI (0 = same distribution)", title=f"Drift per feature{of}")
    ax.legend(loc="lower right")
    return figure
