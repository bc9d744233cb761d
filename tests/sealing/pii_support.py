"""A saga with sensitive data, its participants, and the stores it runs on."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Annotated

import msgspec

from coordinator import Saga, SagaDefinition
from participants import Context, Service

SENSITIVE = msgspec.Meta(extra={"sensitive": True})


class Payment(msgspec.Struct):
    order_id: str
    card: Annotated[str, SENSITIVE]  # sensitive by annotation
    email: str = ""  # sensitive by Saga(sensitive=...)
    receipt: str = ""


class Reserve(msgspec.Struct):
    order_id: str


class Release(msgspec.Struct):
    order_id: str


class Charge(msgspec.Struct):
    order_id: str
    card: str
    email: str


class Charged(msgspec.Struct):
    receipt: str


def definition(*, wait: bool = False) -> SagaDefinition[Payment]:
    """``stock.reserve``, (a wait for ``approval``,) then ``pay.charge`` (the pivot),
    which needs the card and the email in clear."""
    saga = Saga("pii.pay", data=Payment, sensitive=["email"])
    nodes = [
        saga.step(
            "reserve",
            service="stock",
            send=lambda p: Reserve(order_id=p.order_id),
            undo=lambda p: Release(order_id=p.order_id),
        )
    ]
    if wait:
        nodes.append(saga.wait_for("approval"))
    nodes.append(
        saga.step(
            "charge",
            service="pay",
            send=lambda p: Charge(order_id=p.order_id, card=p.card, email=p.email),
            result=Charged,
            merge=lambda p, r: msgspec.structs.replace(p, receipt=r.receipt),
            pivot=True,
        )
    )
    return saga.define(*nodes)


class Seen:
    """What the participants received: they must get the clear values."""

    def __init__(self) -> None:
        self.cards: list[str] = []


def services(seen: Seen) -> list[Service]:
    stock, pay = Service("stock"), Service("pay")

    @stock.handles(Reserve)
    async def reserve(cmd: Reserve, ctx: Context) -> None:
        return None

    @stock.handles(Release)
    async def release(cmd: Release, ctx: Context) -> None:
        return None

    @pay.handles(Charge)
    async def charge(cmd: Charge, ctx: Context) -> Charged:
        seen.cards.append(cmd.card)
        return Charged(receipt=f"r-{cmd.order_id}")

    return [stock, pay]


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def secrets() -> tuple[str, str]:
    """A card number and an email no test data could contain by chance."""
    tag = uuid.uuid4().hex[:12]
    return f"4111-1111-{tag}", f"ada.{tag}@example.org"


PAY = definition()
"""For ``saga run --saga pii_support:PAY``."""
