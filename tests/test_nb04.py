"""What notebook 04's tracing section relies on: a traced function with one span per step makes a
trace whose spans hang under the function's root span, search_traces finds it (newest first) on
its own store, and trace_views shows it without ids, timestamps or durations."""

from __future__ import annotations

import time
from collections.abc import Iterator

from mlflow_series import trace_views

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Trace

#: SQLAlchemy 2.1 warns about a loader strategy of MLflow's own store code when that code is first
#: imported (here, not in a notebook: the tracking server imports it); not what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

STEPS = ["check_input", "load_model", "predict", "round"]


@mlflow.trace(name="price_request")
def price_request(houses: int) -> int:
    """A stand-in for notebook 04's service: the same four steps, the third one slow."""
    with mlflow.start_span("check_input"):
        if houses < 1:
            raise ValueError("no house in the request")
    with mlflow.start_span("load_model"):
        time.sleep(0.05)
    with mlflow.start_span("predict"):
        prices = [200_123.4] * houses
    with mlflow.start_span("round"):
        return sum(round(price) for price in prices)


@pytest.fixture(scope="module")
def experiment_id(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An experiment on a temporary SQLite store, the tracking URI while the module's tests run
    (one store for the module: creating one takes seconds)."""
    before = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path_factory.mktemp('traces') / 'mlflow.db'}")
        try:
            yield mlflow.set_experiment("traces").experiment_id
        finally:
            mlflow.set_tracking_uri(before)


@pytest.fixture(scope="module")
def traces(experiment_id: str) -> list[Trace]:
    """A good request, then a refused one; their traces as search_traces returns them, newest
    (the refused one) first."""
    assert price_request(2) == 400_246
    time.sleep(0.01)  # the refused request starts strictly later
    with pytest.raises(ValueError, match="no house"):
        price_request(0)
    return mlflow.search_traces(
        locations=[experiment_id],
        order_by=["timestamp_ms DESC"],
        max_results=2,
        return_type="list",
        flush=True,
    )


def test_each_step_is_a_child_span_of_the_traced_function(traces: list[Trace]) -> None:
    refused, good = traces
    assert [trace.info.state.value for trace in traces] == ["ERROR", "OK"]
    (root,) = [span for span in good.data.spans if span.parent_id is None]
    assert root.name == "price_request"
    children = sorted(
        (span for span in good.data.spans if span.parent_id == root.span_id),
        key=lambda span: span.start_time_ns,
    )
    assert [span.name for span in children] == STEPS
    assert len(good.data.spans) == 1 + len(STEPS)  # no other span, no grandchild
    assert [span.name for span in refused.data.spans] == ["price_request", "check_input"]


def test_span_table_shows_names_parents_and_statuses_only(traces: list[Trace]) -> None:
    table = trace_views.span_table(traces)
    expected = pd.DataFrame(
        {
            "trace": [1, 1] + [2] * 5,
            "span": ["price_request", "check_input", "price_request", *STEPS],
            "parent": ["", "price_request", "", *["price_request"] * 4],
            "status": ["ERROR", "ERROR"] + ["OK"] * 5,
        }
    )
    pd.testing.assert_frame_equal(table, expected)


def test_span_table_of_no_trace_is_empty_with_its_columns() -> None:
    table = trace_views.span_table([])
    assert table.empty and list(table.columns) == ["trace", "span", "parent", "status"]


def test_span_table_refuses_a_data_frame_and_names_the_fix() -> None:
    with pytest.raises(TypeError, match='return_type="list"'):
        trace_views.span_table(pd.DataFrame({"trace_id": ["tr-1"]}))


def test_slowest_step_is_the_longest_child_span(traces: list[Trace]) -> None:
    assert trace_views.slowest_step(traces[1]) == "load_model"


def test_slowest_step_needs_a_child_span(traces: list[Trace], experiment_id: str) -> None:
    with mlflow.start_span("alone"):
        pass
    [trace] = mlflow.search_traces(
        locations=[experiment_id],
        order_by=["timestamp_ms DESC"],
        max_results=1,
        return_type="list",
        flush=True,
    )
    assert [span.name for span in trace.data.spans] == ["alone"]
    with pytest.raises(ValueError, match="mlflow.start_span"):
        trace_views.slowest_step(trace)
