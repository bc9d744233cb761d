"""The operator's client used the way the end-to-end suite uses it: from many tasks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from procs import servers_up
from servers import AMQP_URL, namespace

from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.service import Settings, open_client


@pytest.mark.timeout(60)
async def test_concurrent_first_publishes_share_one_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``open_client``'s client connects lazily on its first publish. Twenty starts sent at
    once must share one connection: each connection opened by a racing first
    publish but not kept is never closed (``__aexit__`` closes only the last)."""
    servers_up()
    ns = namespace()
    opened: list[RabbitTransport] = []
    connect = RabbitTransport.connect

    async def spy(*args: Any, **kwargs: Any) -> RabbitTransport:
        transport = await connect(*args, **kwargs)
        opened.append(transport)
        return transport

    helper = await RabbitTransport.connect(AMQP_URL, namespace=ns)
    try:
        await helper.declare("coordinator.events", "events", "#")  # so that starts are routable
        monkeypatch.setattr(RabbitTransport, "connect", spy)
        async with open_client(Settings(namespace=ns, amqp_url=AMQP_URL)) as client:
            await asyncio.gather(*(client.start("order.place", {}, f"s{i}") for i in range(20)))
    finally:
        monkeypatch.undo()
        for transport in opened:  # what the client left open; close() is idempotent
            await transport.close()
        await helper.delete_namespace(queues=["coordinator.events"])
        await helper.close()
        await asyncio.sleep(0.2)
    assert len(opened) == 1, (
        f"20 concurrent starts opened {len(opened)} connections; the client closes "
        f"only the one it kept, the other {len(opened) - 1} stay open"
    )
