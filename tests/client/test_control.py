"""``retry_checked``, ``pause_checked`` and ``resume_checked`` on a ``Harness``: each
returns once a coordinator applied the request, or raises with the core's reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import msgspec
import pytest

from coordinator import RequestRefusedError, Retry, Saga, SagaClient
from coordinator.client import (
    pause_checked,
    resume_checked,
    retry_checked,
    signal_checked,
    start_checked,
)
from coordinator.examples.orders import Ledger, build_services, saga
from coordinator.testing import Harness, VirtualClock
from participants import Context, Failure, Service

BIG = 500_000  # over the approval threshold: the order saga waits for a signal


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = VirtualClock()
    async with Harness([saga], build_services(Ledger(), clock), clock=clock) as h:
        yield h


def settling(h: Harness) -> Callable[[float], Awaitable[None]]:
    async def settle(_seconds: float) -> None:
        await h.settle()

    return settle


async def waiting_order(h: Harness, client: SagaClient, saga_id: str) -> None:
    data = {"order_id": saga_id, "lines": [], "total_cents": BIG}
    await start_checked(client, saga.name, data, saga_id, accept_timeout=5, sleep=settling(h))
    await h.advance(timedelta(seconds=1))


async def test_a_paused_order_takes_its_approval_and_goes_on_when_resumed(
    harness: Harness,
) -> None:
    client = SagaClient(harness.transport, harness.store, namespace="memory")
    settle = settling(harness)
    await waiting_order(harness, client, "w1")
    entry = await pause_checked(client, "w1", by="alice", accept_timeout=5, sleep=settle)
    assert entry.note.startswith("paused by alice")
    approval = {"approved": True, "by": "ops"}
    await signal_checked(client, "w1", "approval", approval, accept_timeout=5, sleep=settle)
    state = await client.state("w1")
    assert state is not None and state.paused
    assert state.steps["approval"].status == "waiting"  # received, not yet taken
    entry = await resume_checked(client, "w1", by="bob", accept_timeout=5, sleep=settle)
    assert "resumed by bob; 1 input held while paused" in entry.note
    assert (await harness.run_until_done("w1")).status == "completed"


async def test_each_refusal_carries_the_cores_reason(harness: Harness) -> None:
    client = SagaClient(harness.transport, harness.store, namespace="memory")
    settle = settling(harness)
    with pytest.raises(RequestRefusedError, match="no saga with id nope in namespace 'memory'"):
        await pause_checked(client, "nope", accept_timeout=5, sleep=settle)
    await waiting_order(harness, client, "w2")
    with pytest.raises(RequestRefusedError, match="it has no failed compensation to retry"):
        await retry_checked(client, "w2", accept_timeout=5, sleep=settle)
    with pytest.raises(RequestRefusedError, match=r"the resume: saga is \w+: it is not paused"):
        await resume_checked(client, "w2", accept_timeout=5, sleep=settle)
    await pause_checked(client, "w2", accept_timeout=5, sleep=settle)
    with pytest.raises(RequestRefusedError, match="refused the pause: saga is already paused"):
        await pause_checked(client, "w2", accept_timeout=5, sleep=settle)
    with pytest.raises(RequestRefusedError, match="resume it, then retry"):
        await retry_checked(client, "w2", accept_timeout=5, sleep=settle)


# -- a compensation that fails until its service is fixed ----------------------------------


class Box(msgspec.Struct, frozen=True):
    id: str


class Put(msgspec.Struct):
    id: str


class Take(msgspec.Struct):
    id: str


class Deny(msgspec.Struct):
    id: str


def vault(undone: Counter[str], broken: list[bool]) -> Service:
    service = Service("vault")

    @service.handles(Put)
    async def put(cmd: Put, ctx: Context) -> None:
        return None

    @service.handles(Take)
    async def take(cmd: Take, ctx: Context) -> None:
        if broken[0]:
            raise Failure("VaultJammed", "the vault is jammed")
        undone[cmd.id] += 1

    @service.handles(Deny)
    async def deny(cmd: Deny, ctx: Context) -> None:
        raise Failure("Denied", "no", retryable=False)

    return service


_box: Saga[Box] = Saga(
    "box", data=Box, compensation_retry=Retry(attempts=2, backoff=timedelta(seconds=1))
)
BOX = _box.define(
    _box.step("put", service="vault", send=lambda b: Put(id=b.id), undo=lambda b: Take(id=b.id)),
    _box.step("deny", service="vault", send=lambda b: Deny(id=b.id), pivot=True),
)


async def test_retry_completes_the_compensation_once_the_service_is_fixed() -> None:
    undone: Counter[str] = Counter()
    broken = [True]
    async with Harness([BOX], [vault(undone, broken)]) as h:
        client = SagaClient(h.transport, h.store, namespace="memory")
        await h.start("box", {"id": "b1"}, saga_id="b1")
        failed = await h.run_until_done("b1")
        assert failed.status == "failed"
        assert "VaultJammed" in (failed.reason or "")
        broken[0] = False
        entry = await retry_checked(client, "b1", by="carol", accept_timeout=5, sleep=settling(h))
        assert "operator retry of compensation: put" in entry.note
        assert (await h.run_until_done("b1")).status == "compensated"
        assert undone == Counter({"b1": 1})
        with pytest.raises(RequestRefusedError, match="saga is compensated"):
            await retry_checked(client, "b1", accept_timeout=5, sleep=settling(h))
