"""The shape of a definition (steps with their services, parallel branches, waits
with their signals) and ``find_stuck`` telling from it, not from the history's text,
what a wait expects and which service a parked step needs."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from coordinator import Saga, SagaDefinition
from coordinator.client import (
    DefinitionShape,
    StepShape,
    Wait,
    WaitShape,
    find_stuck,
    shape_of,
    shapes_of,
)
from coordinator.examples.orders import Ledger, Order, build_services, saga
from coordinator.examples.orders.messages import BookShipment, CancelShipment, Reserve
from coordinator.examples.orders.services import SLOW_SHIPPER_SECONDS
from coordinator.testing import Harness, VirtualClock


def review_saga() -> SagaDefinition[Order]:
    """A wait named apart from its signal, with no timeout, between two steps."""
    b = Saga("order.review", data=Order, version=2)
    return b.define(
        b.step(
            "ship",
            service="shipping",
            send=lambda o: BookShipment(order_id=o.order_id, address=o.address, shipper=o.shipper),
            undo=lambda o: CancelShipment(order_id=o.order_id),
        ),
        b.wait_for("approved", name="review"),
        b.step(
            "reserve",
            service="inventory",
            send=lambda o: Reserve(order_id=o.order_id, lines=o.lines),
            pivot=True,
        ),
    )


REVIEW = review_saga()


def test_the_shape_of_steps_parallel_branches_and_waits() -> None:
    assert shape_of(saga) == DefinitionShape(
        steps={
            "reserve": StepShape(node=0, service="inventory", undo=True),
            "charge": StepShape(node=1, service="payments", undo=True),  # the branches of
            "points": StepShape(node=1, service="loyalty", undo=True),  # "settle" share it
            "ship": StepShape(node=3, service="shipping", undo=True),
        },
        waits={"approval": WaitShape(node=2, signal="approval")},
    )
    review = shape_of(REVIEW)
    assert review.waits == {"review": WaitShape(node=1, signal="approved")}
    assert review.steps["reserve"] == StepShape(node=2, service="inventory")  # no undo
    assert (review.node("ship"), review.node("review"), review.node("nope")) == (0, 1, None)
    assert list(shapes_of([saga, REVIEW])) == ["order.place@1", "order.review@2"]


def test_a_shape_is_small_json_that_reads_back() -> None:
    encoded = msgspec.json.encode(shape_of(REVIEW))
    assert msgspec.json.decode(encoded, type=DefinitionShape) == shape_of(REVIEW)
    assert len(encoded) < 200, encoded
    assert b"Reserve" not in encoded  # no code, no payloads: services and signals only


async def test_a_wait_without_timeout_began_when_the_step_before_it_succeeded() -> None:
    clock = VirtualClock()
    services = [s for s in build_services(Ledger(), clock) if s.name == "shipping"]
    async with Harness([REVIEW], services, clock=clock) as h:
        order = {"order_id": "o-1", "lines": [], "total_cents": 1_000, "shipper": "slow"}
        await h.start("order.review", order, saga_id="o-1")
        started = h.clock.now()
        await h.advance(timedelta(seconds=SLOW_SHIPPER_SECONDS))  # the booking takes this long
        history = await h.store.history("o-1")
        await h.advance(timedelta(minutes=20))

        [known] = await find_stuck(h.store, timedelta(minutes=10), shapes=shapes_of([REVIEW]))
        [unknown] = await find_stuck(h.store, timedelta(minutes=10), shapes={})

    [booked] = [e for e in history if b'"StepCompleted"' in bytes(e.input)]
    assert booked.at == started + timedelta(seconds=SLOW_SHIPPER_SECONDS)
    assert known.waits == (Wait(what="signal", step="review", signal="approved", since=booked.at),)
    # No shape recorded for the version: unknown, not guessed from the history's text.
    assert unknown.waits == (Wait(what="signal", step="review"),)


async def test_a_parked_step_without_a_shape_has_no_service_or_time() -> None:
    clock = VirtualClock()
    async with Harness([saga], build_services(Ledger(), clock), clock=clock) as h:
        h.services_down.add("payments")
        await h.start(
            "order.place", {"order_id": "o-1", "lines": [], "total_cents": 100}, saga_id="o-1"
        )
        await h.settle()
        parked_at = h.clock.now()

        [known] = await find_stuck(h.store, timedelta(0), shapes=shapes_of([saga]))
        [unknown] = await find_stuck(
            h.store, timedelta(0), shapes={"order.place@2": shape_of(saga)}
        )

    assert Wait(what="service", step="charge", service="payments", since=parked_at) in known.waits
    assert Wait(what="service", step="charge") in unknown.waits
