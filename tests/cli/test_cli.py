"""The ``saga`` command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from coordinator.cli._app import app

runner = CliRunner()


def test_demo_runs_every_scenario_and_exits_zero() -> None:
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    for order_id in ("A-1001", "A-1002", "A-1003", "A-1004"):
        assert order_id in result.output
    assert "all 8 sagas ended as expected" in result.output
    # A-1001, A-1003 and the outage's first order, shown in full.
    assert result.output.count("status: completed") == 3
    assert result.output.count("status: compensated") == 2


def test_demo_shows_the_payments_outage_from_opening_to_every_saga_completed() -> None:
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    outage = result.output[result.output.index("B-2001 to B-2004") :]
    # The first order's timeline: the breaker opens, its next retry parks, the
    # breaker half-opens, lets it out as the probe, and closes; in that order.
    order = [
        "closed -> open: 3 consecutive failures",
        "charge waits: payments is unavailable",
        "open -> half-open: reset timeout elapsed",
        "payments half-open: probe",
        "charge #3 completed",
        "half-open -> closed: 1 probe(s) succeeded",
    ]
    at = [outage.index(text) for text in order]
    assert at == sorted(at), outage
    assert "status: completed" in outage
    # One line each for the others, all completed after the breaker closed.
    for order_id in ("B-2002", "B-2003", "B-2004"):
        [line] = [x for x in outage.splitlines() if x.startswith(order_id)]
        assert line.split()[1] == "completed", line
        assert "resumed +35.0s" in line, line
    # The breaker's event log, oldest first.
    log = outage[outage.index("event log") :].splitlines()[1:4]
    assert [" ".join(x.split()[1:4]) for x in log] == [
        "closed -> open",
        "open -> half-open",
        "half-open -> closed",
    ], log


def test_graph_prints_mermaid() -> None:
    result = runner.invoke(app, ["graph", "coordinator.examples.orders:saga"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("flowchart TD")
    for name in ("reserve", "charge", "points", "approval", "ship"):
        assert name in result.output
    assert "-.->|undo|" in result.output


def test_graph_states_draws_every_allowed_step_transition() -> None:
    from coordinator.core import STEP_TRANSITIONS

    result = runner.invoke(app, ["graph", "--states"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "stateDiagram-v2"
    drawn = {tuple(line.split(" --> ")) for line in lines[2:]}
    allowed = {(b.strip(), a) for b, afters in STEP_TRANSITIONS.items() for a in afters}
    assert {(b.strip(), a) for b, a in drawn} == allowed


def test_graph_needs_a_saga_or_states() -> None:
    result = runner.invoke(app, ["graph"])
    assert result.exit_code == 2
    assert "--states" in result.output


def test_graph_of_something_that_is_not_a_saga_says_so() -> None:
    result = runner.invoke(app, ["graph", "coordinator.examples.orders:Ledger"])
    assert result.exit_code == 2
    assert "not a saga definition" in result.output
    result = runner.invoke(app, ["graph", "no_such_module:saga"])
    assert result.exit_code == 2
    assert "cannot import" in result.output


def test_contracts_json_schema_describes_every_wire_message() -> None:
    result = runner.invoke(app, ["contracts", "--json-schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    for name in ("Command", "TaskCompleted", "TaskFailed", "StartSaga", "Signal", "CancelSaga"):
        assert name in schema["$defs"]
    assert "retryable" in schema["$defs"]["TaskFailed"]["properties"]


def test_contracts_asyncapi() -> None:
    result = runner.invoke(app, ["contracts", "--asyncapi"])
    assert json.loads(result.output)["asyncapi"] == "3.0.0"


def test_console_script_is_installed() -> None:
    bindir = sys.executable.rsplit("/", 1)[0]
    out = subprocess.run([f"{bindir}/saga", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "graph", "contracts"):
        assert command in out.stdout


def test_topology_without_export_is_a_table_of_queues() -> None:
    result = runner.invoke(app, ["topology", "--service", "inventory", "--namespace", "t1"])
    assert result.exit_code == 0, result.output
    assert "t1.inventory.commands" in result.output
    assert "t1.commands inventory.*" in result.output
    assert not result.output.lstrip().startswith("{"), "JSON only with --export"
    exported = runner.invoke(app, ["topology", "--export", "--namespace", "t1"])
    assert json.loads(exported.output)["queues"][0]["name"] == "t1.coordinator.events"
