"""The saga the dashboard tests drive, and its participants, run in the test's process.

``ui.order``: ``reserve`` (desk, undo ``release``) -> ``charge`` (desk) -> ``notify``
(pager). What each does is the test's to choose, through `Controls` and the
order's fields: ``hold`` keeps ``reserve`` from answering until released,
``deny`` makes ``charge`` refuse (so ``reserve`` is compensated), ``page_down``
makes the pager fail (its breaker opens after two failures), and while
``Controls.jammed`` is set the undo of ``reserve`` fails (the saga ends ``failed``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import msgspec

from coordinator import Breaker, Retry, Saga, SagaDefinition
from participants import Context, Failure, Service

NAME = "ui.order"


class Order(msgspec.Struct):
    id: str
    note: str = ""
    hold: bool = False
    deny: bool = False
    page_down: bool = False


class Reserve(msgspec.Struct):
    id: str
    hold: bool


class Release(msgspec.Struct):
    id: str


class Charge(msgspec.Struct):
    id: str
    deny: bool


class Page(msgspec.Struct):
    id: str
    down: bool


@dataclass
class Controls:
    released: dict[str, asyncio.Event] = field(default_factory=dict)
    jammed: bool = False

    def gate(self, order_id: str) -> asyncio.Event:
        return self.released.setdefault(order_id, asyncio.Event())


def definition() -> SagaDefinition[Order]:
    saga = Saga(
        NAME,
        data=Order,
        breakers={"pager": Breaker(fail_max=2, reset_timeout=timedelta(hours=1))},
        compensation_retry=Retry(attempts=2, backoff=timedelta(milliseconds=50), jitter=0),
    )
    return saga.define(
        saga.step(
            "reserve",
            service="desk",
            send=lambda o: Reserve(id=o.id, hold=o.hold),
            undo=lambda o: Release(id=o.id),
        ),
        saga.step(
            "charge", service="desk", send=lambda o: Charge(id=o.id, deny=o.deny), pivot=True
        ),
        saga.step(
            "notify",
            service="pager",
            send=lambda o: Page(id=o.id, down=o.page_down),
            retry=Retry(attempts=3, backoff=timedelta(milliseconds=50), jitter=0),
        ),
    )


def services(controls: Controls) -> list[Service]:
    desk, pager = Service("desk"), Service("pager")

    @desk.handles(Reserve)
    async def reserve(cmd: Reserve, ctx: Context) -> None:
        if cmd.hold:
            await controls.gate(cmd.id).wait()

    @desk.handles(Release)
    async def release(cmd: Release, ctx: Context) -> None:
        if controls.jammed:
            raise Failure("DeskJammed", "the desk drawer is jammed")

    @desk.handles(Charge)
    async def charge(cmd: Charge, ctx: Context) -> None:
        if cmd.deny:
            raise Failure("Declined", "card declined", retryable=False)

    @pager.handles(Page)
    async def page(cmd: Page, ctx: Context) -> None:
        if cmd.down:
            raise Failure("PagerDown", "the pager does not answer", retryable=True)

    return [desk, pager]
