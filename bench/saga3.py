"""The benchmark saga: three steps on one service, no-op handlers, small data.

``saga run --saga bench.saga3:saga`` runs it; ``saga participant
bench.saga3:services`` answers its commands. ``services_hold_c`` answers only
the first two steps (the third command is dead-lettered as unknown), which
parks every saga at its worst in-flight point for the Redis memory probe.
"""

from __future__ import annotations

import msgspec

from coordinator import Saga
from participants import Context, Service

NAME = "bench.saga3"
SERVICE = "bench"


class Data(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    amount: int = 100


class A(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


class B(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


class C(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


class UndoA(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


class UndoB(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


class UndoC(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str


builder = Saga(NAME, data=Data)
saga = builder.define(
    builder.step(
        "a",
        service=SERVICE,
        send=lambda d: A(order_id=d.order_id),
        undo=lambda d: UndoA(order_id=d.order_id),
    ),
    builder.step(
        "b",
        service=SERVICE,
        send=lambda d: B(order_id=d.order_id),
        undo=lambda d: UndoB(order_id=d.order_id),
    ),
    builder.step(
        "c",
        service=SERVICE,
        send=lambda d: C(order_id=d.order_id),
        undo=lambda d: UndoC(order_id=d.order_id),
    ),
)


def _service(commands: tuple[type[msgspec.Struct], ...]) -> Service:
    service = Service(SERVICE)
    for command in commands:
        # A function per command, so each handler has its own name in profiles.
        async def handler(cmd: msgspec.Struct, ctx: Context) -> None:
            return None

        handler.__name__ = handler.__qualname__ = f"noop_{command.__name__}"
        service.handles(command)(handler)
    return service


def services() -> list[Service]:
    """Every command of the saga, each answered with an empty result."""
    return [_service((A, B, C, UndoA, UndoB, UndoC))]


def services_hold_c() -> list[Service]:
    """Answers A and B only: C is dead-lettered, so each saga stays in flight at step c."""
    return [_service((A, B))]
