"""A consumer's stop ends even when the broker never answers its cancel or close."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from coordinator.adapters.rabbitmq import _consumer
from coordinator.adapters.rabbitmq._consumer import Consumer


class SilentQueue:
    """A queue whose Basic.Cancel is never answered."""

    def __init__(self) -> None:
        self.cancels = 0

    async def consume(self, callback: Any, no_ack: bool) -> str:
        return "ctag"

    async def cancel(self, tag: str) -> None:
        self.cancels += 1
        await asyncio.Event().wait()


class SilentChannel:
    """A channel whose Channel.Close is never answered."""

    def __init__(self) -> None:
        self.is_closed = False
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1
        await asyncio.Event().wait()


async def _never_called(*_: Any) -> None:
    raise AssertionError("no delivery in this test")


async def test_stop_goes_on_when_the_broker_does_not_answer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_consumer, "_BROKER_ANSWER_SECONDS", 0.05, raising=False)
    queue, channel = SilentQueue(), SilentChannel()
    consumer = Consumer(
        channel=cast(Any, channel),
        queue=cast(Any, queue),
        name="coordinator.events",
        handler=_never_called,
        delivery_limit=5,
        max_message_size=None,
        namespace="t",
        park=cast(Any, None),
    )
    await consumer.start()
    with caplog.at_level(logging.WARNING, logger="coordinator.adapters.rabbitmq"):
        # Without the bound on each broker answer this wait never ends.
        await asyncio.wait_for(consumer.stop(), timeout=10)
    assert (queue.cancels, channel.closes) == (1, 1)
    said = [r.getMessage() for r in caplog.records]
    assert any("cancelling the consumer of 'coordinator.events' failed" in m for m in said), said
    assert any("closing the channel of 'coordinator.events' failed" in m for m in said), said
