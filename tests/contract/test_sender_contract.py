"""The ``Transport`` port's sender identity: ``user_id``, validated like RabbitMQ does.

The broker refuses a ``user_id`` that is not the publishing connection's user, so a
consumer can trust it. Run against memory and a real RabbitMQ, where the other user
is a throwaway one made for the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from test_transport_contract import Inbox, dead_of, eventually

from contracts import routes
from coordinator import WrongUserError
from coordinator.ports import DeadLetters, Delivery, Transport

KEY = "reply.pay.order.TaskCompleted"

As = Callable[[str], Awaitable[Transport]]
"""Another client of the same broker logged in as another user (the ``as_user`` fixture)."""


async def test_the_routing_key_and_user_id_reach_the_consumer(transport: Transport) -> None:
    inbox = Inbox()
    await transport.subscribe("q", "events", "#", inbox)
    await transport.publish("events", KEY, b"1", message_id="m-1", user_id=transport.user)
    await transport.publish("events", "control.cancel", b"2", message_id="m-2")
    first, second = await inbox.wait_for(2)
    assert (first.routing_key, first.user_id) == (KEY, transport.user)
    assert (second.routing_key, second.user_id) == ("control.cancel", None)


async def test_another_users_name_is_refused_and_nothing_is_delivered(
    transport: Transport, as_user: As
) -> None:
    inbox = Inbox()
    await transport.subscribe("q", "events", "#", inbox)
    pay = await as_user("pay")
    assert pay.user not in ("", transport.user)
    with pytest.raises(WrongUserError, match="publish with your own user name"):
        await transport.publish("events", KEY, b"forged", message_id="m-1", user_id=pay.user)
    with pytest.raises(WrongUserError):
        await pay.publish("events", KEY, b"forged", message_id="m-2", user_id=transport.user)
    # Both connections publish on: the refusal cost each one message only.
    await pay.publish("events", KEY, b"mine", message_id="m-3", user_id=pay.user)
    await transport.publish("events", KEY, b"own", message_id="m-4", user_id=transport.user)
    await inbox.wait_for(2)
    await asyncio.sleep(0.3)  # nothing else is coming
    assert [(d.body, d.user_id) for d in inbox.deliveries] == [
        (b"mine", pay.user),
        (b"own", transport.user),
    ]


async def test_a_dead_letter_keeps_its_sender_and_comes_back_under_the_movers_name(
    transport: Transport, dead_letters: DeadLetters, as_user: As
) -> None:
    async def park_first(delivery: Delivery) -> None:
        if delivery.delivery_count == 1 and delivery.user_id != transport.user:
            await delivery.dead_letter("wrong_sender", "not now")
        else:
            await delivery.ack()

    inbox = Inbox(park_first)
    await transport.subscribe("q", "events", "#", inbox)
    pay = await as_user("pay")
    # A sender cannot plant the header that records who sent a parked message.
    planted = {routes.ORIGINAL_USER_ID_HEADER: "someone.else"}
    await pay.publish("events", KEY, b"r", message_id="m-1", user_id=pay.user, headers=planted)

    [letter] = await eventually(lambda: dead_letters.list("q"), bool)
    assert letter.headers[routes.ORIGINAL_USER_ID_HEADER] == pay.user
    assert letter.routing_key == KEY
    assert await dead_of(dead_letters, "q") == [("wrong_sender", "not now", b"r")]

    await dead_letters.redrive("q")
    first, again = await inbox.wait_for(2)
    assert (again.routing_key, again.user_id) == (KEY, transport.user)
    assert routes.ORIGINAL_USER_ID_HEADER not in again.headers
    assert first.user_id == pay.user
