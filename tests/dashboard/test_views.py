"""The dashboard's shaping of a saga, without a browser: trace links and the graph."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from desk import definition

from coordinator.client import shape_of
from coordinator.core import SagaState, StepState
from coordinator.dashboard._views import graph_of, trace_link

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_trace_link_fills_in_the_trace_id() -> None:
    url = "http://jaeger:16686/trace/{trace_id}"
    assert trace_link(url, TRACE) == "http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_link("", TRACE) == ""  # no tracing UI configured
    assert trace_link(url, "") == ""  # a saga started without tracing
    assert trace_link(url, "00-<script>-00f067aa0ba902b7-01") == ""


def _state(**steps: str) -> SagaState[Any]:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return SagaState(
        saga_id="s",
        name="ui.order",
        version=1,
        revision=3,
        status="running",
        data={},
        cursor=1,
        steps={name: StepState(status=status) for name, status in steps.items()},  # type: ignore[arg-type]
        started_at=now,
        updated_at=now,
    )


def test_the_graph_marks_the_current_position() -> None:
    state = _state(reserve="succeeded", charge="dispatched", notify="pending")
    for chart in (
        graph_of(state, definition(), None),
        graph_of(state, None, shape_of(definition())),
    ):
        assert chart.startswith("flowchart TD")
        assert "    class charge current" in chart
        assert "    class reserve done" in chart
        assert "notify" in chart and "class notify" not in chart
    assert graph_of(state, None, None) == ""  # neither the code nor a recorded shape
