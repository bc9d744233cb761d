"""What the dashboard reads and acts through: the operator's client and repair
tools of one deployment, as the CLI uses them (no second implementation).

The dashboard asks a ``BackendFactory`` for a `Backend` on each request.
``saga run --http`` and ``saga api`` hand it one that yields the connections
their REST API holds. `open_backend` connects anew each time (Redis at once,
RabbitMQ on first publish): for a dashboard mounted on its own, and tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from coordinator.adapters.redis import RedisBreakerStore
from coordinator.client import SagaClient
from coordinator.service import Operator, Settings, open_client, open_operator, redis_client

__all__ = ["Backend", "BackendFactory", "open_backend"]


@dataclass(frozen=True)
class Backend:
    """One deployment, for an operator.

    Attributes:
        client: Starts, signals, cancels, retries, pauses, resumes and reads sagas.
        operator: The store, recorded saga names and shapes, and dead letters.
        breakers: The shared breaker state.
        settings: The deployment's settings (breaker thresholds, the trace link).
    """

    client: SagaClient
    operator: Operator
    breakers: Any
    settings: Settings


BackendFactory = Callable[[], AbstractAsyncContextManager[Backend]]


@asynccontextmanager
async def open_backend(settings: Settings) -> AsyncIterator[Backend]:
    """A `Backend` on the deployment ``settings`` points at, closed on exit."""
    async with open_client(settings) as client, open_operator(settings) as operator:
        redis = redis_client(settings)
        try:
            breakers = RedisBreakerStore(redis, namespace=settings.namespace)
            yield Backend(client, operator, breakers, settings)
        finally:
            await redis.aclose()
