"""``saga retry``, ``saga pause`` and ``saga resume``: what they say, and every refusal
in one line with exit 1 and the core's reason."""

from __future__ import annotations

import json

import pytest
from test_cli_errors import one_line, saga
from test_cli_live import Deployment, live, order

__all__ = ["live"]  # the fixture, shared with test_cli_live


@pytest.mark.parametrize("command", ["retry", "pause", "resume"])
def test_an_unknown_saga_is_one_line_and_exit_code_1(command: str) -> None:
    line = one_line(saga(command, "no-such-saga"), 1, "no saga with id no-such-saga")
    assert "in namespace" in line


@pytest.mark.parametrize("command", ["retry", "pause", "resume"])
def test_a_missing_saga_id_is_a_usage_error(command: str) -> None:
    one_line(saga(command), 2, "Missing argument")


@pytest.mark.timeout(180)
def test_pause_holds_a_signal_until_resume_and_refusals_say_why(live: Deployment) -> None:
    live.json("start", "order.place", "--id", "p1", "--input", order("p1", total_cents=500_000))
    live.wait_for("p1", "approval:waiting")
    paused = live.saga("pause", "p1", "--by", "alice", "--hold-deadline")
    assert paused.stdout.strip() == "p1 paused (deadline held); `saga resume p1` lets it go on"
    twice = live.saga("pause", "p1", check=False)
    line = one_line(twice, 1, "saga p1 refused the pause: saga is already paused by alice since")
    assert line.startswith("error: ")
    one_line(live.saga("retry", "p1", check=False), 1, "saga is paused: resume it, then retry")

    live.saga("signal", "p1", "approval", "--data", '{"approved": true, "by": "ops"}')
    shown = live.json("show", "p1")
    assert shown["paused"] is True and shown["paused_by"] == "alice"
    assert "paused by alice" in live.saga("show", "p1").stdout.splitlines()[0]
    assert shown["steps"]["approval"]["status"] == "waiting", "held, not yet taken"
    history = live.json("history", "p1")
    assert history[-1]["input"]["type"] == "SignalReceived"
    assert history[-1]["note"] == "saga paused: held until resumed"
    pause_entry = next(e for e in history if e["input"]["type"] == "PauseRequested")
    assert (pause_entry["input"]["by"], pause_entry["input"]["hold_deadline"]) == ("alice", True)

    resumed = live.saga("resume", "p1", "--by", "bob")
    assert resumed.stdout.startswith("p1 resumed: resumed by bob; 1 input held while paused")
    state = live.wait_for("p1", "completed")
    assert state["data"]["approved_by"] == "ops"
    again = live.saga("resume", "p1", check=False)
    one_line(again, 1, "saga p1 refused the resume: saga is completed: it is not paused")
    ended = live.saga("pause", "p1", check=False)
    one_line(ended, 1, "saga is completed: there is nothing to pause")
    running = live.json("start", "order.place", "--id", "p2", "--input", order("p2"), "--wait")
    assert running["status"] == "completed"
    refused = live.saga("retry", "p2", check=False)
    one_line(refused, 1, "saga p2 refused the retry: saga is completed: it has no failed")
    assert json.loads(live.saga("show", "p2", "--json").stdout)["paused"] is False
