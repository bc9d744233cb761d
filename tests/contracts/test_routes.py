"""The wire's names come from `contracts.routes`, and they do not change.

The literals below are what brokers in service hold and messages in flight
carry: a test that fails here is a wire change, not a refactoring.
"""

from __future__ import annotations

import pytest

from contracts import asyncapi, routes
from coordinator.adapters.memory._topic import topic_matches
from coordinator.adapters.rabbitmq import definitions


def test_the_names_on_the_wire_are_unchanged() -> None:
    assert routes.EXCHANGES == ("commands", "events", "lifecycle")
    assert (routes.EVENTS_QUEUE, routes.EVENTS_BINDING) == ("coordinator.events", "#")
    assert routes.commands_queue("inventory") == "inventory.commands"
    assert routes.commands_binding("inventory") == "inventory.*"
    assert routes.command_key("inventory", "Reserve") == "inventory.Reserve"
    assert routes.reply_key("pay", "orders", "TaskCompleted") == "reply.pay.orders.TaskCompleted"
    assert routes.reply_key("pay", "orders", "TaskFailed") == "reply.pay.orders.TaskFailed"
    assert routes.start_key("orders") == "control.start.orders"
    assert (routes.SIGNAL_KEY, routes.CANCEL_KEY) == ("control.signal", "control.cancel")
    assert (routes.RETRY_KEY, routes.PAUSE_KEY, routes.RESUME_KEY) == (
        "control.retry",
        "control.pause",
        "control.resume",
    )
    assert routes.lifecycle_key("orders", "completed") == "orders.completed"
    assert routes.reply_id("o1:reserve:action:1") == "o1:reserve:action:1:reply"
    assert routes.address("saga", "inventory.commands") == "saga.inventory.commands"
    assert routes.DEFAULT_NAMESPACE == "saga"
    assert (routes.DEAD_LETTER_REASON_HEADER, routes.DEAD_LETTER_DETAIL_HEADER) == (
        "x-death-reason",
        "x-death-detail",
    )
    assert (
        routes.ORIGINAL_QUEUE_HEADER,
        routes.ORIGINAL_EXCHANGE_HEADER,
        routes.ORIGINAL_ROUTING_KEY_HEADER,
    ) == ("x-original-queue", "x-original-exchange", "x-original-routing-key")
    assert routes.ORIGINAL_USER_ID_HEADER == "x-original-user-id"
    assert (routes.SIG_HEADER, routes.SIG_TS_HEADER) == ("x-sig", "x-sig-ts")


@pytest.mark.parametrize(
    ("key", "route"),
    [
        (
            "reply.pay.order.place.TaskFailed",
            routes.EventsRoute("TaskFailed", "order.place", "pay"),
        ),
        ("control.start.order.place", routes.EventsRoute("StartSaga", "order.place")),
        ("control.cancel", routes.EventsRoute("CancelSaga")),
        ("control.resume", routes.EventsRoute("ResumeSaga")),
        # The keys before reply./control., still read for one release.
        (
            "order.place.TaskCompleted",
            routes.EventsRoute("TaskCompleted", "order.place", legacy=True),
        ),
        ("orders.StartSaga", routes.EventsRoute("StartSaga", "orders", legacy=True)),
        ("signal.Signal", routes.EventsRoute("Signal", legacy=True)),
        ("pause.PauseSaga", routes.EventsRoute("PauseSaga", legacy=True)),
        ("control.bogus", None),
        ("control.start", None),
        ("control.cancel.extra", None),
        ("cancel.Signal", None),
        ("orders", None),
    ],
)
def test_events_keys_say_what_they_carry(key: str, route: routes.EventsRoute | None) -> None:
    assert routes.events_route(key) == route


def test_the_asyncapi_channels_are_the_exchanges() -> None:
    channels = asyncapi()["channels"]
    addresses = {routes.address(routes.DEFAULT_NAMESPACE, e) for e in routes.EXCHANGES}
    assert set(channels) == addresses
    assert {channel["address"] for channel in channels.values()} == addresses
    commands = channels[routes.address(routes.DEFAULT_NAMESPACE, "commands")]
    queue = routes.address(routes.DEFAULT_NAMESPACE, routes.commands_queue("{service}"))
    assert f"`{queue}`" in commands["description"]


def test_the_topology_export_binds_the_queues_the_routes_name() -> None:
    ns = routes.DEFAULT_NAMESPACE
    exported = definitions(ns, ["payments", "inventory"], delivery_limit=5)

    consumed = [
        (routes.EVENTS_QUEUE, "events", routes.EVENTS_BINDING),
        *(
            (routes.commands_queue(s), "commands", routes.commands_binding(s))
            for s in ("inventory", "payments")
        ),
    ]
    bindings = {
        (b["source"], b["destination"], b["routing_key"])
        for b in exported["bindings"]
        if b["source"] != routes.address(ns, "dead")
    }
    assert bindings == {
        (routes.address(ns, exchange), routes.address(ns, queue), pattern)
        for queue, exchange, pattern in consumed
    }
    exchanges = {e["name"] for e in exported["exchanges"]}
    assert exchanges == {routes.address(ns, e) for e in (*routes.EXCHANGES, "dead")}


def test_each_routing_key_reaches_the_queue_named_for_it() -> None:
    command = routes.command_key("inventory", "Reserve")
    assert topic_matches(routes.commands_binding("inventory"), command)
    assert not topic_matches(routes.commands_binding("payments"), command)
    for key in (
        routes.reply_key("pay", "orders", "TaskCompleted"),
        routes.reply_key("pay", "orders", "TaskFailed"),
        routes.start_key("orders"),
        routes.SIGNAL_KEY,
        routes.CANCEL_KEY,
        routes.RETRY_KEY,
        routes.PAUSE_KEY,
        routes.RESUME_KEY,
    ):
        assert topic_matches(routes.EVENTS_BINDING, key)
