"""The Ames house-price data: loading, the feature subset, the train/validation/test split.

The data (data/ames.csv.gz, built by `make data`; see data/README.md) holds 2,930 sales from
2006-2010. The series uses it like this:

- the 5 houses over 4,000 sq ft of living area are dropped, as De Cock (2011) advises
  (`remove_outliers`; `split_data` and `new_data` apply it);
- the sales of 2006-2009 are split at random into train/validation/test (70/15/15);
- the sales of 2010 are kept apart as "new data" that arrives after the model was trained, for
  the monitoring and drift notebooks (`new_data`);
- the target `Sale_Price` stays in dollars here: the models fit on log(price) themselves and
  predict dollars (see `mlflow_series.modeling`).

`load_ames` gives text columns as pandas `category` (handy to explore); the X frames of
`split_data` and `new_data` are "model-ready": numeric features float64 and categorical ones
plain strings. MLflow needs that: its signature inference and schema enforcement reject the
`category` dtype ("Can not safely convert category to <U0"), and it warns about integer columns,
which cannot hold a missing value at serving time.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from mlflow_series import config

import numpy as np
import pandas as pd

TARGET = "Sale_Price"
#: Numeric features: sizes, ages and counts.
NUMERIC_FEATURES = [
    "Gr_Liv_Area",
    "Total_Bsmt_SF",
    "First_Flr_SF",
    "Lot_Area",
    "Year_Built",
    "Year_Remod_Add",
    "Garage_Cars",
    "Garage_Area",
    "Full_Bath",
    "Half_Bath",
    "Bsmt_Full_Bath",
    "Fireplaces",
    "Mas_Vnr_Area",
]
#: Categorical features (pandas `category` dtype after `load_ames`).
CATEGORICAL_FEATURES = [
    "Neighborhood",
    "Overall_Cond",
    "Bldg_Type",
    "House_Style",
    "MS_Zoning",
    "Sale_Condition",
    "Bsmt_Exposure",
    "Functional",
    "Garage_Finish",
    "Exterior_1st",
    "Central_Air",
]
#: The model inputs, in this order: numeric first, then categorical.
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES

#: The shape of data/ames.csv.gz: 2,930 sales, 73 columns plus the target.
EXPECTED_SHAPE = (2930, 74)
#: Columns the helpers and notebooks rely on, beyond the features.
REQUIRED_COLUMNS = [*FEATURES, TARGET, "Year_Sold", "Mo_Sold", "Longitude", "Latitude"]
#: Sales of these years are split into train/validation/test; later ones are "new data".
SPLIT_YEARS = (2006, 2009)
NEW_DATA_YEAR = 2010
#: De Cock's advice: drop the houses with more living area than this (5 of them).
MAX_LIVING_AREA = 4000
VALIDATION_FRACTION = 0.15
TEST_FRACTION = 0.15


class DataError(ValueError):
    """The data file or a data frame is not what the series expects."""


class Split(NamedTuple):
    """A train/validation/test split: features X_* and target y_* (dollars) of each part."""

    X_train: pd.DataFrame
    X_val: pd.DataFrame
    X_test: pd.DataFrame
    y_train: pd.Series
    y_val: pd.Series
    y_test: pd.Series

    def sizes(self) -> dict[str, int]:
        """The number of sales in each part."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _fail(path: Path, problem: str) -> DataError:
    """A DataError naming the file, the problem and the fix."""
    return DataError(f"{path}: {problem}. Run `make data` to rebuild it.")


def _read_csv(path: Path) -> pd.DataFrame:
    """Parse the CSV, keeping the "None" category as text; wrap parse errors in DataError."""
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[], engine="c")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise _fail(path, f"cannot read it as gzipped CSV ({type(exc).__name__}: {exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise _fail(path, "it is empty") from exc


def _validate(df: pd.DataFrame, path: Path) -> None:
    """Raise DataError unless the frame has the expected shape, columns and numeric types."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise _fail(path, f"missing columns {missing}")
    if df.shape != EXPECTED_SHAPE:
        raise _fail(path, f"shape {df.shape}, expected {EXPECTED_SHAPE}")
    numeric = [*NUMERIC_FEATURES, TARGET, "Year_Sold", "Mo_Sold", "Longitude", "Latitude"]
    not_numeric = [c for c in numeric if not pd.api.types.is_numeric_dtype(df[c])]
    if not_numeric:
        raise _fail(path, f"columns {not_numeric} should be numeric")


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path, mtime_ns: int, size: int) -> pd.DataFrame:
    """Read, validate and type the data once per file version (path, mtime and size)."""
    df = _read_csv(path)
    _validate(df, path)
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    return df.astype(dict.fromkeys(text, "category"))


def load_ames(path: Path | str = config.DATA_FILE) -> pd.DataFrame:
    """The Ames data: numeric columns numeric, text columns `category` (with "None" a category)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. Run `make data` to create it.")
    stat = path.stat()
    return _load_cached(path.resolve(), stat.st_mtime_ns, stat.st_size).copy()


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise DataError if the frame lacks any of the columns."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"the data frame lacks columns {missing}; load it with load_ames()")


def remove_outliers(df: pd.DataFrame, max_living_area: int = MAX_LIVING_AREA) -> pd.DataFrame:
    """Drop the houses with more than max_living_area sq ft above ground (De Cock's advice)."""
    _require(df, ["Gr_Liv_Area"])
    return df[df["Gr_Liv_Area"] <= max_living_area]


def model_ready(X: pd.DataFrame) -> pd.DataFrame:
    """X with numeric columns as float64 and the others as plain strings, as MLflow wants them."""
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    return X.astype({c: ("float64" if c in numeric else "str") for c in X.columns})


def _x_y(df: pd.DataFrame, features: Sequence[str] | None) -> tuple[pd.DataFrame, pd.Series]:
    """The model-ready feature columns and the target (dollars) of a frame."""
    columns = list(FEATURES if features is None else features)
    _require(df, [*columns, TARGET])
    return model_ready(df[columns]), df[TARGET].copy()


def split_data(
    df: pd.DataFrame, seed: int = config.SEED, features: Sequence[str] | None = None
) -> Split:
    """Split the 2006-2009 sales (outliers removed) at random into train/val/test, 70/15/15."""
    _require(df, ["Year_Sold"])
    first, last = SPLIT_YEARS
    sales = remove_outliers(df[df["Year_Sold"].between(first, last)])
    if len(sales) < 20:
        raise DataError(f"only {len(sales)} sales from {first}-{last}: too few to split")
    X, y = _x_y(sales, features)
    order = np.random.default_rng(seed).permutation(len(sales))
    n_test, n_val = round(len(sales) * TEST_FRACTION), round(len(sales) * VALIDATION_FRACTION)
    parts = np.split(order, [n_test, n_test + n_val])
    test, val, train = (np.sort(part) for part in parts)
    return Split(X.iloc[train], X.iloc[val], X.iloc[test], y.iloc[train], y.iloc[val], y.iloc[test])


def new_data(
    df: pd.DataFrame, features: Sequence[str] | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """The 2010 sales (outliers removed): data the models never saw, for monitoring and drift."""
    _require(df, ["Year_Sold"])
    return _x_y(remove_outliers(df[df["Year_Sold"] == NEW_DATA_YEAR]), features)


def data_digest(data: pd.DataFrame | pd.Series) -> str:
    """A short, stable digest of a frame's values, index and column names, for tagging runs."""
    digest = hashlib.sha256()
    names = data.columns if isinstance(data, pd.DataFrame) else [data.name]
    digest.update("\x1f".join(map(str, names)).encode())
    digest.update(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
    return digest.hexdigest()[:12]
