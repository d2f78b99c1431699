"""Views of MLflow traces that read the same on every run: span names, parents and statuses."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mlflow.entities import Trace


def span_table(traces: list[Trace]) -> pd.DataFrame:
    """One row per span of each trace, in the order the spans started.

    Args:
        traces: Trace objects, as `mlflow.search_traces(..., return_type="list")` returns them
            (newest first when ordered by ``timestamp_ms DESC``).

    Returns:
        A data frame with the columns ``trace`` (1 for the first trace given, 2 for the next...),
        ``span`` (the span's name), ``parent`` (its parent span's name, "" for the root span)
        and ``status`` ("OK", "ERROR" or "UNSET", from the span's status). No ids, timestamps
        or durations: they change on every run.

    Raises:
        TypeError: if `traces` is a data frame (search_traces' default return type): pass
            ``return_type="list"`` to search_traces.
    """
    if isinstance(traces, pd.DataFrame):
        raise TypeError(
            "span_table needs a list of traces, not a data frame: "
            'call mlflow.search_traces(..., return_type="list")'
        )
    rows = []
    for number, trace in enumerate(traces, start=1):
        spans = sorted(trace.data.spans, key=lambda span: span.start_time_ns)
        names = {span.span_id: span.name for span in spans}
        rows += [
            {
                "trace": number,
                "span": span.name,
                "parent": names.get(span.parent_id, "") if span.parent_id else "",
                "status": span.status.status_code.value,
            }
            for span in spans
        ]
    return pd.DataFrame(rows, columns=["trace", "span", "parent", "status"])


def slowest_step(trace: Trace) -> str:
    """The name of the child span that took longest (end minus start time) in one trace.

    A name, not a duration, so that it reads the same on every run when one step clearly
    dominates (here loading a model, against predicting five houses).

    Raises:
        ValueError: if the trace has no child span (only its root span): add spans with
            ``mlflow.start_span`` or nested ``@mlflow.trace`` functions.
    """
    steps = [span for span in trace.data.spans if span.parent_id is not None]
    if not steps:
        raise ValueError(
            "the trace has only its root span: add a span per step with mlflow.start_span(...)"
        )
    return max(steps, key=lambda span: span.end_time_ns - span.start_time_ns).name
