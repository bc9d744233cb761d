"""A shop saga for the metrics tests, whose outcome the order id chooses.

``reserve`` (stock) -> ``charge`` (pay, two attempts) -> ``ship`` (shipping, with
a timeout). Stock and pay are participants written with the SDK; shipping is
played by the test itself (`Shipping`), so that a booking that is never
answered times out without a handler holding its key (the SDK would make the
booking's undo wait for it).

The scenario, run one order after the other, and what each does:

* ``ok-1``: completes.
* ``flaky-1``: the first charge fails (retryable), the retry succeeds: completes.
* ``declined-1``: the card is declined (not retryable): compensated.
* ``slow-1``: shipping never answers the booking: it times out, compensated.
* ``down-1``: pay fails both attempts: compensated (2 failures for pay's breaker).
* ``down-2``: pay fails again, its breaker opens (3 in a row), the retry parks.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec

from contracts import DEFAULT_CODEC, TaskCompleted, routes
from coordinator import Breaker, Retry, Saga, SagaDefinition
from coordinator.ports import Delivery, Subscription, Transport
from participants import Context, Failure, Service

SCENARIO = ("ok-1", "flaky-1", "declined-1", "slow-1", "down-1", "down-2")
NAME = "shop.order"


class Order(msgspec.Struct):
    order_id: str


class Reserve(msgspec.Struct):
    order_id: str


class Release(msgspec.Struct):
    order_id: str


class Charge(msgspec.Struct):
    order_id: str


class Refund(msgspec.Struct):
    order_id: str


class Book(msgspec.Struct):
    order_id: str


class CancelBooking(msgspec.Struct):
    order_id: str


class Declined(Failure):
    retryable = False


def definition(ship_timeout: timedelta = timedelta(seconds=1)) -> SagaDefinition[Order]:
    saga = Saga(
        NAME,
        data=Order,
        breakers={"pay": Breaker(fail_max=3, reset_timeout=timedelta(hours=1))},
    )
    return saga.define(
        saga.step(
            "reserve",
            service="stock",
            send=lambda o: Reserve(order_id=o.order_id),
            undo=lambda o: Release(order_id=o.order_id),
        ),
        saga.step(
            "charge",
            service="pay",
            send=lambda o: Charge(order_id=o.order_id),
            undo=lambda o: Refund(order_id=o.order_id),
            retry=Retry(
                attempts=2, backoff=timedelta(milliseconds=100), jitter=0, give_up_on={"Declined"}
            ),
        ),
        saga.step(
            "ship",
            service="shipping",
            send=lambda o: Book(order_id=o.order_id),
            undo=lambda o: CancelBooking(order_id=o.order_id),
            timeout=ship_timeout,
        ),
    )


def services() -> list[Service]:
    stock, pay = Service("stock"), Service("pay")

    @stock.handles(Reserve)
    async def reserve(cmd: Reserve, ctx: Context) -> None:
        pass

    @stock.handles(Release)
    async def release(cmd: Release, ctx: Context) -> None:
        pass

    @pay.handles(Charge)
    async def charge(cmd: Charge, ctx: Context) -> None:
        if cmd.order_id.startswith("declined"):
            raise Declined("card declined")
        if cmd.order_id.startswith("down"):
            raise Failure("Unavailable", "pay is down", retryable=True)
        if cmd.order_id.startswith("flaky") and ctx.attempt == 1:
            raise Failure("Flaky", "try again", retryable=True)

    @pay.handles(Refund)
    async def refund(cmd: Refund, ctx: Context) -> None:
        pass

    return [stock, pay]


class Shipping:
    """The shipping service, played by the test: it takes every command and
    answers each, except the booking of a ``slow`` order."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._transport.subscribe(
            routes.commands_queue("shipping"),
            "commands",
            routes.commands_binding("shipping"),
            self._handle,
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()

    async def _handle(self, delivery: Delivery) -> None:
        command = DEFAULT_CODEC.decode_command(delivery.body)
        if command.kind == "action" and command.payload["order_id"].startswith("slow"):
            await delivery.ack()  # never answered: the step times out
            return
        reply = TaskCompleted(
            message_id=routes.reply_id(command.message_id),
            saga_id=command.saga_id,
            saga_name=command.saga_name,
            step=command.step,
            attempt=command.attempt,
            kind=command.kind,
            causation_id=command.message_id,
            sent_at=command.sent_at,
        )
        await self._transport.publish(
            "events",
            routes.reply_key(command.service, command.saga_name, "TaskCompleted"),
            DEFAULT_CODEC.encode(reply),
            message_id=reply.message_id,
        )
        await delivery.ack()


# What the scenario does, counted: (step, kind, outcome) -> steps that settled so.
STEP_DURATIONS = {
    ("reserve", "action", "succeeded"): 6,
    ("charge", "action", "succeeded"): 3,
    ("charge", "action", "failed"): 2,
    ("ship", "action", "succeeded"): 2,
    ("ship", "action", "timed_out"): 1,
    ("reserve", "compensation", "compensated"): 3,
    ("charge", "compensation", "compensated"): 1,
    ("ship", "compensation", "compensated"): 1,
}
FINISHED = {"completed": 2, "compensated": 3}
COMPENSATIONS = {"reserve": 3, "charge": 1, "ship": 1}
# Commands sent, by routing key: the charges are ok, flaky x2, declined, slow, down-1 x2,
# down-2 (its retry parks).
COMMANDS = {
    "stock.Reserve": 6,
    "pay.Charge": 8,
    "shipping.Book": 3,
    "stock.Release": 3,
    "pay.Refund": 1,
    "shipping.CancelBooking": 1,
}
# Replies: every command but the slow booking.
REPLIES = sum(COMMANDS.values()) - 1
# The participant's answers: (command, outcome) -> count.
ANSWERS = {
    ("Reserve", "completed"): 6,
    ("Release", "completed"): 3,
    ("Charge", "completed"): 3,
    ("Charge", "failed"): 4,
    ("Charge", "rejected"): 1,
    ("Refund", "completed"): 1,
}
