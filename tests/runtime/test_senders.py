"""Who may send what, through the real runtime on RabbitMQ and Redis.

Every process logs in as its own throwaway RabbitMQ user (``{prefix}.coordinator``,
``{prefix}.operator``, ``{prefix}.{service}``, made once for the module: each
``rabbitmqctl`` call takes seconds), so the broker validates each message's
``user_id``; the coordinator checks it against the step's service's user (mapped,
as ``SAGA_SERVICE_USERS`` does) or the users allowed to control sagas. Refused
messages are dead-lettered ``wrong_sender`` and leave the saga as it was.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from broker_users import broker_users
from redis.asyncio import Redis
from servers import AMQP_URL, connect_redis, drop_namespace, namespace

from contracts import DEFAULT_CODEC, CancelSaga, Signal, TaskCompleted, TaskFailed, routes
from coordinator import Coordinator, SagaClient
from coordinator.adapters.memory import MemoryIdempotencyStore, SystemClock
from coordinator.adapters.rabbitmq import RabbitDeadLetters, RabbitTransport
from coordinator.adapters.redis import RedisSagaStore
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.examples.orders.messages import Line
from coordinator.runtime import WRONG_SENDER, SenderCheck
from participants import ParticipantWorker

WAIT = 20.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SERVICES = ("inventory", "payments", "loyalty", "shipping")
BIG = 250_000  # cents: the order waits for an approval
SMALL = 2_500


class Deployment:
    def __init__(self, ns: str, store: RedisSagaStore) -> None:
        self.ns = ns
        self.store = store
        self.as_user: dict[str, RabbitTransport] = {}
        self.coordinator: Coordinator

    async def connect(self, stack: AsyncExitStack, urls: dict[str, str]) -> None:
        for name, url in urls.items():
            transport = await RabbitTransport.connect(
                url, namespace=self.ns, connect_timeout=timedelta(seconds=3)
            )
            stack.push_async_callback(transport.close)
            self.as_user[name] = transport
        guest = await RabbitTransport.connect(AMQP_URL, namespace=self.ns)
        stack.push_async_callback(guest.close)
        self.as_user["guest"] = guest

    async def dead(self) -> list[tuple[str, str, str]]:
        letters = await RabbitDeadLetters(self.as_user["guest"]).list(routes.EVENTS_QUEUE)
        return [(d.message_id, d.reason, d.detail) for d in letters]

    async def state(self, saga_id: str) -> Any:
        return await self.coordinator.load(saga_id)


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[str, dict[str, str]]]:
    """(prefix, role or service -> AMQP URL of the user ``{prefix}.{name}``)."""
    prefix = namespace()
    names = ("coordinator", "operator", *SERVICES)
    with broker_users(f"{prefix}.{n}" for n in names) as urls:
        yield prefix, {n: urls[f"{prefix}.{n}"] for n in names}


@pytest.fixture
async def deployment(ns: str, users: tuple[str, dict[str, str]]) -> AsyncIterator[Deployment]:
    prefix, urls = users
    client: Redis = await connect_redis()
    store = RedisSagaStore(client, namespace=ns, buckets=2, retention=timedelta(hours=1))
    d = Deployment(ns, store)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(client.aclose)
        stack.push_async_callback(drop_namespace, client, ns)
        await d.connect(stack, urls)
        queues = [routes.EVENTS_QUEUE, *(routes.commands_queue(s) for s in SERVICES)]
        stack.push_async_callback(d.as_user["guest"].delete_namespace, queues)
        clock = SystemClock()
        d.coordinator = Coordinator(
            [saga],
            transport=d.as_user["coordinator"],
            store=store,
            clock=clock,
            timer_interval=timedelta(seconds=0.05),
            senders=SenderCheck(
                namespace=ns,
                service_users={s: f"{prefix}.{s}" for s in SERVICES},
                control_users=(f"{prefix}.coordinator", f"{prefix}.operator"),
            ),
        )
        await d.coordinator.start()
        stack.push_async_callback(d.coordinator.stop)
        for service in build_services(Ledger(), clock):
            worker = ParticipantWorker(
                service,
                transport=d.as_user[service.name],
                idempotency=MemoryIdempotencyStore(),
                clock=clock,
            )
            await worker.start()
            stack.push_async_callback(worker.stop)
        yield d


async def eventually(probe: Callable[[], Awaitable[Any]]) -> Any:
    async with asyncio.timeout(WAIT):
        while True:
            result = await probe()
            if result:
                return result
            await asyncio.sleep(0.02)


async def start(d: Deployment, total_cents: int) -> str:
    """Start an order through the broker, as the operator's client does."""
    saga_id = f"o-{uuid.uuid4().hex[:8]}"
    order = Order(order_id=saga_id, lines=[Line(sku="book", quantity=1)], total_cents=total_cents)
    client = SagaClient(d.as_user["operator"], d.store, namespace=d.ns)
    await client.start(saga.name, msgspec.to_builtins(order), saga_id)
    return saga_id


def charge_done(saga_id: str, message_id: str, attempt: int = 1) -> bytes:
    return DEFAULT_CODEC.encode(
        TaskCompleted(
            message_id=message_id,
            saga_id=saga_id,
            saga_name=saga.name,
            step="charge",
            attempt=attempt,
            kind="action",
            causation_id="forged",
            sent_at=T0,
            result={"charge_id": "forged"},
        )
    )


async def status_is(d: Deployment, saga_id: str, status: str, step: str = "") -> Any:
    async def probe() -> Any:
        state = await d.state(saga_id)
        if state is None or state.status != status:
            return None
        return state if not step or state.steps[step].status == "waiting" else None

    return await eventually(probe)


async def test_replies_of_the_services_and_the_operators_start_pass(
    deployment: Deployment,
) -> None:
    saga_id = await start(deployment, SMALL)
    state = await status_is(deployment, saga_id, "completed")
    assert state.steps["charge"].status == "succeeded"
    assert await deployment.dead() == []


async def test_a_message_from_the_wrong_user_is_dead_lettered_and_the_saga_untouched(
    deployment: Deployment,
) -> None:
    d = deployment
    saga_id = await start(d, BIG)
    before = await status_is(d, saga_id, "running", step="approval")
    history = await d.store.history(saga_id)
    approve = Signal(
        message_id="approve-by-payments",
        saga_id=saga_id,
        name="approval",
        data={"approved": True, "by": "payments"},
        sent_at=T0,
    )
    cancel = CancelSaga(message_id="cancel-by-guest", saga_id=saga_id, reason="x", sent_at=T0)
    pay_key = routes.reply_key("payments", saga.name, "TaskCompleted")
    inventory, payments, guest = (d.as_user[n] for n in ("inventory", "payments", "guest"))
    forged = [
        # Another service answers for payments, under its own key and name...
        (inventory, routes.reply_key("inventory", saga.name, "TaskCompleted"), "f-1", True),
        # ...or under payments' key (topic permissions would stop that at the broker).
        (inventory, pay_key, "f-2", True),
        # A reply without user_id, on payments' key.
        (guest, pay_key, "f-3", False),
    ]
    for transport, key, message_id, signed in forged:
        body = charge_done(saga_id, message_id)
        user_id = transport.user if signed else None
        await transport.publish("events", key, body, message_id=message_id, user_id=user_id)
    # A participant approves; a user who is no operator cancels.
    await payments.publish(
        "events",
        routes.SIGNAL_KEY,
        DEFAULT_CODEC.encode(approve),
        message_id=approve.message_id,
        user_id=payments.user,
    )
    await guest.publish(
        "events",
        routes.CANCEL_KEY,
        DEFAULT_CODEC.encode(cancel),
        message_id=cancel.message_id,
        user_id=guest.user,
    )

    letters = await eventually(lambda: _at_least(d.dead(), 5))
    reasons = {message_id: (reason, detail) for message_id, reason, detail in letters}
    assert {m: r for m, (r, _) in reasons.items()} == {
        "f-1": WRONG_SENDER,
        "f-2": WRONG_SENDER,
        "f-3": WRONG_SENDER,
        "approve-by-payments": WRONG_SENDER,
        "cancel-by-guest": WRONG_SENDER,
    }
    assert f"expected user_id '{d.as_user['payments'].user}'" in reasons["f-2"][1]
    assert "without user_id" in reasons["f-3"][1]
    assert "signal from user" in reasons["approve-by-payments"][1]
    after = await d.state(saga_id)
    assert (after.revision, after.status) == (before.revision, "running")
    assert await d.store.history(saga_id) == history

    # The operator's approval goes through: the saga was only waiting.
    client = SagaClient(d.as_user["operator"], d.store, namespace=d.ns)
    await client.signal(saga_id, "approval", {"approved": True, "by": "dana"})
    await status_is(d, saga_id, "completed")


async def test_a_stale_reply_changes_nothing_even_after_its_dedupe_id_is_gone(
    deployment: Deployment, ns: str
) -> None:
    d = deployment
    saga_id = await start(d, SMALL)
    done = await status_is(d, saga_id, "completed")
    [charged] = [
        e
        for e in await d.store.history(saga_id)
        if e.changed and b'"step":"charge"' in bytes(e.input)
    ]
    # The reply's dedupe id expires (here: is deleted) and a copy comes again, with
    # attempts never sent and a failure too, all from payments' own user.
    client = await connect_redis()
    try:
        [key] = [k async for k in client.scan_iter(match=f"{ns}:*:s:{saga_id}")]
        # A reply's dedupe id is its message id and its outcome.
        assert await client.hdel(key, f"d:{charged.input_id}:TaskCompleted") == 1
    finally:
        await client.aclose()
    payments = d.as_user["payments"]
    pay_key = routes.reply_key("payments", saga.name, "TaskCompleted")
    copies = [(charged.input_id, 1), ("forged-attempt-7", 7)]
    for message_id, attempt in copies:
        body = charge_done(saga_id, message_id, attempt)
        await payments.publish(
            "events", pay_key, body, message_id=message_id, user_id=payments.user
        )
    failed = TaskFailed(
        message_id="forged-failure",
        saga_id=saga_id,
        saga_name=saga.name,
        step="charge",
        attempt=1,
        kind="action",
        causation_id="forged",
        sent_at=T0,
        error_type="CardDeclined",
        error_message="no",
        retryable=False,
    )
    await payments.publish(
        "events",
        routes.reply_key("payments", saga.name, "TaskFailed"),
        DEFAULT_CODEC.encode(failed),
        message_id=failed.message_id,
        user_id=payments.user,
    )

    ids = {charged.input_id, "forged-attempt-7", "forged-failure"}

    async def recorded() -> list[Any] | None:
        entries = [e for e in await d.store.history(saga_id) if e.input_id in ids and not e.changed]
        return entries if len(entries) == 3 else None

    ignored = await eventually(recorded)
    assert all("ignored" in e.note and e.revision == done.revision for e in ignored)
    after = await d.state(saga_id)
    assert (after.revision, after.status, after.data) == (done.revision, "completed", done.data)
    assert await d.dead() == []


async def _at_least(probe: Awaitable[list[Any]], count: int) -> list[Any] | None:
    found = await probe
    return found if len(found) >= count else None
