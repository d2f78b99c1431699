"""Tests of mlflow_series.data and scripts/make_data.py on the committed data file."""

from __future__ import annotations

import gzip
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from mlflow_series import config, data

import numpy as np
import pandas as pd
import pytest

MAKE_DATA = config.REPO_ROOT / "scripts" / "make_data.py"


@pytest.fixture(scope="module")
def make_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_data", MAKE_DATA)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_gz(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index=False)
    return path


# --- load_ames ---------------------------------------------------------------------------------


def test_load_shape_and_types(ames: pd.DataFrame) -> None:
    assert ames.shape == (2930, 74)
    categorical = ames.select_dtypes("category").columns
    assert len(categorical) == 40
    assert set(data.CATEGORICAL_FEATURES) <= set(categorical)
    numeric = ames.columns.difference(categorical)
    assert all(pd.api.types.is_numeric_dtype(ames[c]) for c in numeric)
    assert pd.api.types.is_integer_dtype(ames[data.TARGET])
    assert ames.notna().all().all()


def test_none_stays_a_category(ames: pd.DataFrame) -> None:
    assert (ames["Mas_Vnr_Type"] == "None").sum() == 1775
    assert (ames["Misc_Feature"] == "None").sum() == 2824
    assert "None" in ames["Mas_Vnr_Type"].cat.categories


def test_load_returns_a_fresh_copy() -> None:
    first = data.load_ames()
    first.loc[0, "Sale_Price"] = -1
    assert data.load_ames().loc[0, "Sale_Price"] == 215000


def test_load_is_fast() -> None:
    data._load_cached.cache_clear()
    start = time.perf_counter()
    data.load_ames()
    assert time.perf_counter() - start < 1.0


def test_missing_file_names_it_and_make_data(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv.gz"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.csv\.gz.*make data"):
        data.load_ames(missing)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"this is not gzip", "cannot read"),
        (gzip.compress(b"a,b\n1,2\n", mtime=0)[:12], "cannot read"),  # truncated stream
        (gzip.compress(b"\xff\xfe\x00bad,\x81\n", mtime=0), "cannot read"),  # not UTF-8
        (b"", "empty"),
    ],
    ids=["not-gzip", "truncated", "not-utf8", "empty"],
)
def test_corrupt_file_is_a_data_error(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "ames.csv.gz"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=rf"ames\.csv\.gz.*{problem}.*make data") as info:
        data.load_ames(path)
    assert isinstance(info.value, ValueError)


def test_wrong_columns_are_named(tmp_path: Path, ames: pd.DataFrame) -> None:
    path = write_gz(tmp_path / "ames.csv.gz", ames.drop(columns=["Gr_Liv_Area", "Latitude"]))
    with pytest.raises(data.DataError, match=r"missing columns \['Gr_Liv_Area', 'Latitude'\]"):
        data.load_ames(path)


def test_wrong_shape(tmp_path: Path, ames: pd.DataFrame) -> None:
    path = write_gz(tmp_path / "ames.csv.gz", ames.head(100))
    with pytest.raises(data.DataError, match=r"shape \(100, 74\), expected \(2930, 74\)"):
        data.load_ames(path)


def test_text_in_a_numeric_column(tmp_path: Path, ames: pd.DataFrame) -> None:
    broken = ames.astype({"Sale_Price": object})
    broken.loc[5, "Sale_Price"] = "unknown"
    path = write_gz(tmp_path / "ames.csv.gz", broken)
    with pytest.raises(data.DataError, match=r"\['Sale_Price'\] should be numeric"):
        data.load_ames(path)


def test_cache_sees_a_changed_file(tmp_path: Path, ames: pd.DataFrame) -> None:
    path = write_gz(tmp_path / "ames.csv.gz", ames)
    assert data.load_ames(path).shape == (2930, 74)
    path.write_bytes(b"corrupted since")
    with pytest.raises(data.DataError):
        data.load_ames(path)


# --- outliers, split, new data -----------------------------------------------------------------


def test_remove_outliers_drops_the_five_big_houses(ames: pd.DataFrame) -> None:
    kept = data.remove_outliers(ames)
    assert len(ames) - len(kept) == 5
    assert kept["Gr_Liv_Area"].max() <= 4000


def test_split_sizes_and_disjoint_parts(split: data.Split) -> None:
    assert split.sizes() == {"train": 1808, "val": 388, "test": 388}
    parts = [split.X_train.index, split.X_val.index, split.X_test.index]
    assert sum(len(p) for p in parts) == len(set().union(*parts))
    for X, y in [(split.X_train, split.y_train), (split.X_val, split.y_val)]:
        assert X.index.equals(y.index)


def test_split_covers_2006_to_2009_without_outliers(ames: pd.DataFrame, split: data.Split) -> None:
    index = split.X_train.index.union(split.X_val.index).union(split.X_test.index)
    expected = ames[ames["Year_Sold"] <= 2009]
    assert ames.loc[index, "Year_Sold"].between(2006, 2009).all()
    assert len(index) == len(expected) - 5
    assert ames.loc[index, "Gr_Liv_Area"].max() <= 4000


def test_split_is_model_ready(split: data.Split) -> None:
    assert list(split.X_train.columns) == data.FEATURES
    assert 15 <= len(data.FEATURES) <= 25
    assert set(split.X_train[data.NUMERIC_FEATURES].dtypes) == {np.dtype("float64")}
    for column in data.CATEGORICAL_FEATURES:
        assert pd.api.types.is_string_dtype(split.X_train[column]), column
    assert split.y_train.name == data.TARGET
    assert 100_000 < split.y_train.median() < 250_000  # dollars, not log dollars


def test_split_is_reproducible(ames: pd.DataFrame, split: data.Split) -> None:
    again = data.split_data(ames)
    assert all(a.equals(b) for a, b in zip(split, again, strict=True))
    other = data.split_data(ames, seed=7)
    assert not other.X_test.index.equals(split.X_test.index)


def test_split_with_other_features(ames: pd.DataFrame) -> None:
    split = data.split_data(ames, features=["Gr_Liv_Area", "Neighborhood"])
    assert list(split.X_val.columns) == ["Gr_Liv_Area", "Neighborhood"]


def test_split_errors(ames: pd.DataFrame) -> None:
    with pytest.raises(data.DataError, match="lacks columns"):
        data.split_data(ames.drop(columns="Year_Sold"))
    with pytest.raises(data.DataError, match="lacks columns"):
        data.split_data(ames, features=["Overall_Qual"])
    with pytest.raises(data.DataError, match="too few"):
        data.split_data(ames[ames["Year_Sold"] == 2010])


def test_new_data_is_2010_only(ames: pd.DataFrame, split: data.Split) -> None:
    X_new, y_new = data.new_data(ames)
    assert len(X_new) == len(y_new) == 341
    assert (ames.loc[X_new.index, "Year_Sold"] == 2010).all()
    assert X_new.index.intersection(split.X_train.index).empty
    assert list(X_new.columns) == data.FEATURES


# --- data_digest -------------------------------------------------------------------------------


def test_digest_is_short_and_stable(ames: pd.DataFrame) -> None:
    digest = data.data_digest(ames)
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert data.data_digest(ames.copy()) == digest == data.data_digest(data.load_ames())
    assert digest == "f7092bf1e576"  # changes only if the data (or pandas' hashing) changes


def test_digest_sees_changes(ames: pd.DataFrame, split: data.Split) -> None:
    digest = data.data_digest(ames)
    changed = ames.copy()
    changed.loc[10, "Sale_Price"] += 1
    assert data.data_digest(changed) != digest
    assert data.data_digest(ames.rename(columns={"Lot_Area": "Area"})) != digest
    assert data.data_digest(ames.iloc[1:]) != digest
    assert data.data_digest(split.y_train) != data.data_digest(split.y_val)


# --- scripts/make_data.py ----------------------------------------------------------------------


def test_make_data_check_passes_on_the_committed_file() -> None:
    result = subprocess.run(
        [sys.executable, str(MAKE_DATA), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "SHA-256 OK" in result.stdout


def test_make_data_check_rejects_other_bytes(tmp_path: Path, make_data: ModuleType) -> None:
    other = tmp_path / "ames.csv.gz"
    other.write_bytes(make_data.gzip_bytes(b"a,b\n1,2\n"))
    with pytest.raises(make_data.ChecksumMismatch, match="is not the recorded version"):
        make_data.check(other)
    with pytest.raises(make_data.CheckError, match="missing: run `make data`"):
        make_data.check(tmp_path / "absent.csv.gz")


def test_make_data_gzip_is_deterministic(make_data: ModuleType) -> None:
    content = b"x,y\n1,2\n" * 100
    packed = make_data.gzip_bytes(content)
    assert packed == make_data.gzip_bytes(content)
    assert packed[4:8] == b"\0\0\0\0"  # mtime 0
    assert gzip.decompress(packed) == content
    committed = config.DATA_FILE.read_bytes()
    assert make_data.gzip_bytes(gzip.decompress(committed)) == committed


def test_make_data_readme_without_checksum(tmp_path: Path, make_data: ModuleType) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# data\n")
    with pytest.raises(make_data.CheckError, match="no line like 'SHA-256 of ames.csv.gz"):
        make_data.recorded_sha256(readme)
