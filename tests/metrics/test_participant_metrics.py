"""A participant worker's metrics, read with the SDK's in-memory reader."""

from __future__ import annotations

from datetime import timedelta

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from readings import Readings
from shop_support import ANSWERS, NAME, SCENARIO, Order, Shipping, definition, services

from coordinator.telemetry import ParticipantMetrics
from coordinator.testing import Harness
from participants import ParticipantWorker


async def test_commands_by_outcome_handler_durations_and_dead_letters() -> None:
    reader = InMemoryMetricReader()
    metrics = ParticipantMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    async with Harness([definition()]) as h:
        workers = [
            ParticipantWorker(
                s, transport=h.transport, idempotency=h.idempotency, clock=h.clock, metrics=metrics
            )
            for s in services()
        ]
        for worker in workers:
            await worker.start()
        shipping = Shipping(h.transport)
        await shipping.start()
        for order_id in SCENARIO:
            await h.start(NAME, Order(order_id=order_id), saga_id=order_id)
            await h.advance(timedelta(seconds=5))
        # A command delivered again is answered from the record, the handler not run.
        again = next(p for p in h.transport.published if p.routing_key == "stock.Reserve")
        await h.transport.publish(
            "commands", again.routing_key, again.body, message_id=again.message_id
        )
        await h.transport.publish("commands", "pay.Charge", b"{", message_id="junk")
        await h.settle()
        for worker in workers:
            await worker.stop()
        await shipping.stop()
    got = Readings(reader)
    answers = got.by("saga.participant.commands", "saga.command", "saga.command.outcome")
    assert answers == {**ANSWERS, ("Reserve", "replayed"): 1}
    durations = got.by("saga.participant.handler.duration", "saga.command", "saga.command.outcome")
    assert durations == ANSWERS, "one duration per handler run; none for the replayed one"
    assert got.by("saga.dead_letters", "messaging.destination.name", "saga.dead_letter.reason") == {
        ("saga.pay.commands", "malformed_json"): 1
    }
    consumed = got.by("messaging.client.consumed.messages", "messaging.destination.name")
    assert consumed == {
        ("saga.stock.commands",): ANSWERS[("Reserve", "completed")] + 1 + 3,
        ("saga.pay.commands",): 3 + 4 + 1 + 1 + 1,
    }
    sent = got.by("messaging.client.sent.messages", "messaging.destination.name")
    by_reply: dict[str, float] = {}
    for (destination,), count in sent.items():
        # saga.events:reply.{service}.{saga}.{reply}
        service, _, reply = destination.removeprefix("saga.events:reply.").partition(f".{NAME}.")
        assert service in ("stock", "pay"), destination
        by_reply[reply] = by_reply.get(reply, 0) + count
    assert by_reply == {"TaskCompleted": 6 + 1 + 3 + 3 + 1, "TaskFailed": 4 + 1}
