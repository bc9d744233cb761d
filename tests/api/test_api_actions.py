"""The API's repairs that succeed, on a deployment that needs them: a failed saga
retried, a breaker overridden, a dead letter shown and redriven. Each test checks
what changed afterwards (the saga, the breaker, the queues), not only the answer.

The coordinator runs the dashboard tests' ``ui.order`` saga with its participants
(``desk``) next to the approval saga; a test jams the desk (``Controls``) to make
an undo fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_support import NAME, Api, approval, auth
from desk import NAME as ORDER
from desk import Controls, definition, services
from procs import poll
from readings import scraped, total
from redis.asyncio import Redis

from coordinator.adapters.redis import RedisBreakerStore
from coordinator.core import SagaDefinition
from coordinator.service import open_client
from participants import Service

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def controls() -> Controls:
    return Controls()


@pytest.fixture
def saga_definitions() -> list[SagaDefinition[Any]]:
    return [approval(), definition()]


@pytest.fixture
def participant_services(controls: Controls) -> list[Service]:
    return services(controls)


async def start(api: Api, saga_id: str, name: str = ORDER, **fields: Any) -> None:
    """Start an order with ``fields`` (or an approval, which takes an amount)."""
    data = {"id": saga_id, **fields} if name == ORDER else {"amount": 1}
    answer = await api.http.post(
        "/api/sagas",
        json={"name": name, "data": data, "saga_id": saga_id},
        headers=auth("operator"),
    )
    assert answer.status_code == 201, answer.text


async def read(api: Api, path: str) -> Any:
    answer = await api.http.get(path, headers=auth("viewer"))
    assert answer.status_code == 200, (path, answer.text)
    return answer.json()


async def until(api: Api, saga_id: str, status: str) -> dict[str, Any]:
    """The saga once the API shows it ``status``."""

    async def reached() -> dict[str, Any] | None:
        saga: dict[str, Any] = await read(api, f"/api/sagas/{saga_id}")
        return saga if saga["status"] == status else None

    found: dict[str, Any] = await poll(f"{saga_id} to be {status}", reached, timeout=60)
    return found


async def test_retry_compensates_a_failed_saga_once_its_service_is_fixed(
    api: Api, controls: Controls
) -> None:
    controls.jammed = True  # the undo of reserve fails: the saga ends failed
    await start(api, "jam-1", deny=True)
    failed = await until(api, "jam-1", "failed")
    assert failed["steps"]["reserve"]["status"] == "compensation_failed"

    controls.jammed = False
    answer = await api.http.post("/api/sagas/jam-1/retry", headers=auth("operator"))
    assert answer.status_code == 200, answer.text
    acted = answer.json()
    assert acted["note"].startswith("operator retry of compensation: reserve"), acted
    # The reply to the re-sent undo may already be in: either way it is no longer failed.
    assert acted["saga"]["status"] in ("compensating", "compensated"), acted
    assert acted["saga"]["revision"] > failed["revision"]

    done = await until(api, "jam-1", "compensated")
    assert done["steps"]["reserve"]["status"] == "compensated"
    history = await read(api, "/api/sagas/jam-1/history")
    [retried] = [e for e in history if e["input"]["type"] == "RetryRequested"]
    assert retried["input"]["by"] == "operator-1"
    assert (retried["status_before"], retried["status_after"]) == ("failed", "compensating")
    [sent] = retried["effects"]
    assert (sent["type"], sent["command"], sent["attempt"]) == ("Dispatch", "Release", 3)
    # The desk took the re-sent undo and answered it: its reply ended the saga.
    last = history[-1]["input"]
    assert (last["type"], last["step"], last["kind"], last["attempt"]) == (
        "StepCompleted",
        "reserve",
        "compensation",
        3,
    )


async def override(api: Api, action: str, reason: str) -> dict[str, Any]:
    answer = await api.http.post(
        f"/api/breakers/pager/{action}", json={"reason": reason}, headers=auth("admin")
    )
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    [listed] = [b for b in await read(api, "/api/breakers") if b["service"] == "pager"]
    # The list shows afterwards what was answered (the parked count moves on its own:
    # a coordinator resumes the parked sagas once it sees the breaker closed).
    assert {**listed, "parked": 0} == {**status, "parked": 0}
    return status


async def coordinator_sees(api: Api, state: str) -> None:
    """Wait until the coordinator's own copy of the pager's breaker is in ``state``:
    its ``/metrics`` (on the API's port) report that copy."""

    async def seen() -> bool | None:
        found = scraped((await api.http.get("/metrics")).text)
        labels = {"saga_service": "pager", "saga_circuit_breaker_state": state}
        return True if total(found, "saga_circuit_breaker_state", **labels) == 1 else None

    await poll(f"the coordinator to see the pager's breaker {state}", seen, timeout=30)


async def test_breaker_overrides_hold_park_and_release_sagas_and_are_logged(
    api: Api, redis_client: Redis
) -> None:
    await start(api, "before-1")
    await until(api, "before-1", "completed")
    opened = await override(api, "open", "pager maintenance")
    assert (opened["state"], opened["held"], opened["half_open_at"]) == ("open", True, None)

    # Held open, the breaker parks the next saga at the pager's step, once the
    # coordinator has read it (it refreshes its copy of the breakers every 250 ms).
    await coordinator_sees(api, "open")
    await start(api, "parked-1")

    async def parked() -> dict[str, Any] | None:
        [pager] = [b for b in await read(api, "/api/breakers") if b["service"] == "pager"]
        return pager if pager["parked"] == 1 else None

    await poll("a saga parked at the pager", parked, timeout=60)
    waiting = await read(api, "/api/sagas/parked-1")
    assert (waiting["status"], waiting["steps"]["notify"]["status"]) == (
        "running",
        "awaiting_service",
    )

    # Reset hands the breaker back to its rules: still open, it half-opens after
    # reset_timeout (an hour here), so the saga stays parked.
    reset = await override(api, "reset", "back to the automatic rules")
    assert (reset["state"], reset["held"], reset["parked"]) == ("open", False, 1)
    assert reset["half_open_at"] is not None

    closed = await override(api, "close", "the pager is back")
    assert (closed["state"], closed["held"], closed["failures"]) == ("closed", False, 0)
    await until(api, "parked-1", "completed")
    [pager] = [b for b in await read(api, "/api/breakers") if b["service"] == "pager"]
    assert pager["parked"] == 0

    # Each override is in the breaker's event log with who asked and why, newest first.
    store = RedisBreakerStore(redis_client, namespace=api.settings.namespace)
    events = [(e.old, e.new, e.reason, e.by) for e in await store.events("pager")]
    assert events == [
        ("open", "closed", "the pager is back", "admin-1"),
        ("open", "open", "back to the automatic rules", "admin-1"),
        ("closed", "open", "pager maintenance", "admin-1"),
    ]


async def test_a_dead_letter_is_shown_with_its_reason_and_redriven_to_its_saga(
    api: Api,
) -> None:
    # A signal sent before its saga was started: the coordinator dead-letters it.
    async with open_client(api.settings) as client:
        message_id = await client.signal("early-1", "approve", {}, by="ops-1")

    async def listed() -> list[dict[str, Any]] | None:
        letters: list[dict[str, Any]] = await read(api, "/api/dead-letters")
        return letters or None

    [letter] = await poll("the early signal in the dead letters", listed, timeout=60)
    [shown] = await read(api, f"/api/dead-letters/{message_id}")
    assert shown == letter
    assert (shown["queue"], shown["message_id"], shown["reason"]) == (
        "coordinator.events",
        message_id,
        "unknown_saga",
    )
    assert "early-1" in shown["detail"]
    body = json.loads(shown["body"])
    assert (body["type"], body["saga_id"], body["name"]) == ("Signal", "early-1", "approve")

    await start(api, "early-1", name=NAME)
    answer = await api.http.post(
        "/api/dead-letters/redrive", json={"message_ids": [message_id]}, headers=auth("operator")
    )
    assert answer.status_code == 200, answer.text
    assert [m["message_id"] for m in answer.json()] == [message_id]
    assert await read(api, "/api/dead-letters") == []
    gone = await api.http.get(f"/api/dead-letters/{message_id}", headers=auth("viewer"))
    assert gone.status_code == 404

    # Back on the events queue, the signal reaches the saga now started: it completes.
    await until(api, "early-1", "completed")
    history = await read(api, "/api/sagas/early-1/history")
    [signal] = [e for e in history if e["input"]["type"] == "SignalReceived"]
    assert (signal["input_id"], signal["input"]["by"]) == (message_id, "ops-1")
