"""One command answered twice, with different outcomes, under its one reply id.

A reply's id is fixed by its command (``routes.reply_id``), but a participant
can answer one command twice if it does not record a retryable failure for
that command (the SDK does; a participant written without it, or an earlier
SDK, may not): when its process dies after publishing that failure and before
acking the command, the broker redelivers the command and the handler runs
again; this time it may apply, and its success goes out under the failure's
id. That success is news, not a copy of the failure.

The participants are the test itself (no workers): commands wait in their
queues and the test publishes the replies, in the order it needs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts import DEFAULT_CODEC, Command, Reply, StepKind, TaskCompleted, TaskFailed, routes
from coordinator.examples.orders import Order, saga
from coordinator.examples.orders.messages import Line
from coordinator.testing import Harness

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def answer(
    saga_id: str, step: str, reply: type[Reply], kind: StepKind = "action", **fields: Any
) -> Reply:
    """A reply to attempt 1 of the step's action (or undo), under the id its command fixes."""
    command_id = f"{saga_id}:{step}:{kind}:1"
    return reply(
        message_id=routes.reply_id(command_id),
        saga_id=saga_id,
        saga_name=saga.name,
        step=step,
        attempt=1,
        kind=kind,
        causation_id=command_id,
        sent_at=T0,
        **fields,
    )


async def send(h: Harness, reply: Reply) -> None:
    await h.transport.publish(
        "events", "test", DEFAULT_CODEC.encode(reply), message_id=reply.message_id
    )
    await h.settle()


def commands(h: Harness, saga_id: str) -> list[str]:
    """The commands sent for the saga, as ``step:kind:attempt``."""
    sent: list[Command] = [
        DEFAULT_CODEC.decode_command(m.body)
        for m in h.transport.published
        if m.exchange == "commands"
    ]
    return [f"{c.step}:{c.kind}:{c.attempt}" for c in sent if c.saga_id == saga_id]


async def test_a_success_under_the_id_of_a_taken_failure_is_applied() -> None:
    """The charge failed retryably; before its retry, the other branch failed and
    the saga turned back, abandoning the charge. Then the redelivered first
    attempt applies, and its success comes under the failure's id: the charge
    owes its refund, which goes out once the reservation is released."""
    async with Harness([saga]) as h:
        order = Order(
            order_id="f1",
            lines=[Line(sku="a", quantity=1)],
            total_cents=1,
            card="flaky",
            member_id="m-1",
        )
        await h.start(saga.name, order, saga_id="f1")
        await h.settle()
        await send(h, answer("f1", "reserve", TaskCompleted, result={"hold_id": "h"}))
        failure = answer(
            "f1",
            "charge",
            TaskFailed,
            error_type="GatewayTimeout",
            error_message="the card network did not answer",
            retryable=True,
        )
        await send(h, failure)
        assert (await h.state("f1")).steps["charge"].status == "retrying"
        await send(
            h,
            answer(
                "f1", "points", TaskFailed, error_type="Nope", error_message="no", retryable=False
            ),
        )
        turned = await h.state("f1")
        assert (turned.status, turned.steps["charge"].status) == ("compensating", "abandoned")

        success = answer("f1", "charge", TaskCompleted, result={"charge_id": "ch-1"})
        assert success.message_id == failure.message_id
        await send(h, success)
        charge = (await h.state("f1")).steps["charge"]
        assert (charge.status, charge.owes) == ("succeeded", True)

        assert commands(h, "f1")[-1] == "reserve:compensation:1"
        await send(h, answer("f1", "reserve", TaskCompleted, "compensation"))
        assert commands(h, "f1")[-1] == "charge:compensation:1"
