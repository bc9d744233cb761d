"""A tiny saga whose ``pay`` service can be switched down, for the breaker tests."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Literal

import msgspec

from coordinator import Breaker, Retry, Saga, SagaDefinition
from coordinator.ports import Clock
from participants import Context, Failure, Service

Mode = Literal["up", "failing", "silent", "refusing"]


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


class Declined(Failure):
    retryable = False


class Switch:
    """What each service does now, and what it received (the participant's own ledger)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.mode: dict[str, Mode] = {"stock": "up", "pay": "up"}
        self.received: Counter[tuple[str, str]] = Counter()
        self.applied: Counter[tuple[str, str, str]] = Counter()
        self.log: list[tuple[str, str, str, int]] = []

    async def handle(self, service: str, command: str, order_id: str, ctx: Context) -> None:
        self.received[(service, command)] += 1
        self.log.append((service, command, order_id, ctx.attempt))
        mode = self.mode[service]
        if mode == "failing":
            raise Failure("Unavailable", f"{service} is down", retryable=True)
        if mode == "refusing":
            raise Declined("declined")
        if mode == "silent":
            # Never answers in time: the step's timeout fires first.
            assert self.clock is not None
            await self.clock.sleep(timedelta(days=1))
            raise Failure("TooLate", "answered a day late", retryable=True)
        self.applied[(service, command, order_id)] += 1


def services(switch: Switch) -> list[Service]:
    stock, pay = Service("stock"), Service("pay")

    @stock.handles(Reserve)
    async def reserve(cmd: Reserve, ctx: Context) -> None:
        await switch.handle("stock", "reserve", cmd.order_id, ctx)

    @stock.handles(Release)
    async def release(cmd: Release, ctx: Context) -> None:
        await switch.handle("stock", "release", cmd.order_id, ctx)

    @pay.handles(Charge)
    async def charge(cmd: Charge, ctx: Context) -> None:
        await switch.handle("pay", "charge", cmd.order_id, ctx)

    @pay.handles(Refund)
    async def refund(cmd: Refund, ctx: Context) -> None:
        await switch.handle("pay", "refund", cmd.order_id, ctx)

    return [stock, pay]


def definition(
    *,
    on_unavailable: Literal["wait", "compensate"] = "wait",
    fail_max: int = 3,
    reset_timeout: timedelta = timedelta(seconds=30),
    attempts: int = 2,
    deadline: timedelta | None = None,
    pay_first: bool = False,
    timeout: timedelta | None = None,
    name: str = "brk.order",
) -> SagaDefinition[Order]:
    """``stock.reserve`` then ``pay.charge`` (or the other way round with ``pay_first``)."""
    saga = Saga(
        name,
        data=Order,
        deadline=deadline,
        breakers={"pay": Breaker(fail_max=fail_max, reset_timeout=reset_timeout)},
    )
    reserve = saga.step(
        "reserve",
        service="stock",
        send=lambda o: Reserve(order_id=o.order_id),
        undo=lambda o: Release(order_id=o.order_id),
    )
    charge = saga.step(
        "charge",
        service="pay",
        send=lambda o: Charge(order_id=o.order_id),
        undo=lambda o: Refund(order_id=o.order_id),
        retry=Retry(attempts=attempts, backoff=timedelta(seconds=1), give_up_on={"Declined"}),
        timeout=timeout,
        on_unavailable=on_unavailable,
    )
    if pay_first:
        return saga.define(charge, reserve)
    return saga.define(reserve, charge)
