"""History entries say the saga's status before and after their input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from coordinator import Saga
from coordinator.core import CancelRequested, SagaDefinition, StepCompleted, decide, start
from coordinator.core import Start as StartInput
from coordinator.ports import HistoryEntry
from coordinator.runtime._translate import history_entry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Data(msgspec.Struct, frozen=True):
    n: int = 0


class Do(msgspec.Struct):
    n: int


def _saga(version: int = 1) -> SagaDefinition[Data]:
    builder: Saga[Data] = Saga("hist", data=Data, version=version)
    return builder.define(
        builder.step("a", service="s", send=lambda d: Do(n=d.n), undo=lambda d: Do(n=-d.n))
    )


def test_entries_carry_the_status_before_and_after_the_input() -> None:
    defn = _saga()
    first = start(defn, StartInput(saga_id="h1", data=Data(), at=T0))
    entry = history_entry(1, StartInput(saga_id="h1", data=Data(), at=T0), first)
    assert (entry.status_before, entry.status_after) == (None, "running")

    done = decide(
        defn,
        first.state,
        StepCompleted(message_id="r1", step="a", kind="action", attempt=1, at=T0),
    )
    entry = history_entry(
        2, StepCompleted(message_id="r1", step="a", kind="action", attempt=1, at=T0), done
    )
    assert (entry.status_before, entry.status_after) == ("running", "completed")

    # An input that changes nothing (here, refused) says so: the status stays.
    refused = decide(defn, done.state, CancelRequested(at=T0 + timedelta(seconds=1)))
    entry = history_entry(2, CancelRequested(at=T0), refused)
    assert not refused.changed
    assert (entry.status_before, entry.status_after) == ("completed", "completed")


def test_an_entry_written_before_the_fields_existed_still_decodes() -> None:
    old = (
        b'{"at":"2026-01-01T00:00:00Z","revision":1,"input":{},"note":"saga started","effects":[]}'
    )
    entry = msgspec.json.decode(old, type=HistoryEntry)
    assert entry.status_before is None
    assert entry.status_after is None
    assert entry.version == 0  # before versions were recorded
    # And a new one round-trips with them.
    new = msgspec.structs.replace(entry, status_before="running", status_after="completed")
    again = msgspec.json.decode(msgspec.json.encode(new), type=HistoryEntry)
    assert (again.status_before, again.status_after) == ("running", "completed")


def test_entries_carry_the_time_and_version_of_their_decision() -> None:
    defn = _saga(version=3)
    at = T0 + timedelta(minutes=5)
    first = start(defn, StartInput(saga_id="h1", data=Data(), at=at))
    entry = history_entry(0, StartInput(saga_id="h1", data=Data(), at=at), first)
    assert (entry.at, entry.version) == (at, 3)
    # Unchanged entries too: the saga's version decided it.
    late = decide(
        defn,
        first.state,
        StepCompleted(message_id="r9", step="a", kind="action", attempt=7, at=at),
    )
    assert not late.changed
    entry = history_entry(
        0, StepCompleted(message_id="r9", step="a", kind="action", attempt=7, at=at), late
    )
    again = msgspec.json.decode(msgspec.json.encode(entry), type=HistoryEntry)
    assert again.version == 3
