"""``saga api``: the REST API on its own, for operators who keep it apart from the replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any

from coordinator.core import SagaDefinition
from coordinator.service import HttpExtras, Settings, observe, until_signalled

__all__ = ["serve_api"]

_log = logging.getLogger("coordinator")


async def serve_api(
    settings: Settings,
    extras: HttpExtras,
    *,
    definitions: Iterable[SagaDefinition[Any]] = (),
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``extras`` (``api_extras``) with the probes until signalled; ready once
    Redis answered (RabbitMQ is connected at the first action)."""
    async with AsyncExitStack() as stack:
        observed = await observe(stack, settings, process="saga-api", extras=extras)
        await observed.connected(stack)

        async def ready() -> str:
            return ""

        observed.readiness.watch("api", ready)
        _log.info("API serving namespace %r%s", settings.namespace, observed.serving)
        await until_signalled(stop)
        observed.readiness.drain()
