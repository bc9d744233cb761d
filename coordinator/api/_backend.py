"""What the API works on: the operator's client and tools on one deployment.

One `Backend` per process, opened with the server and closed with it. The
recorded deployment (saga names, services, definition shapes) is read again by
each request that needs it: coordinators of new versions record theirs while
the API runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, final

from litestar.di import NamedDependency

from coordinator.adapters.redis import RedisBreakerStore, RedisSagaStore
from coordinator.breakers import policies
from coordinator.client import DefinitionShape, SagaClient, namespace_queues
from coordinator.core import SagaDefinition
from coordinator.ports import BreakerPolicy, DeadLetters
from coordinator.service import (
    Operator,
    Payloads,
    Settings,
    open_client,
    open_operator,
    recorded_deployment,
    recorded_shapes,
    redis_client,
)

__all__ = ["Backend", "Served", "open_backend"]

ACCEPT_TIMEOUT = 10.0
"""Seconds an action waits for a coordinator to take it (then 503)."""


@final
class Backend:
    """The client, the operator's tools and the breakers of one deployment.

    Attributes:
        client: Starts, signals, cancels and reads sagas.
        store: The saga store (the index by start time, the parked sagas).
        breakers: The shared breaker state.
        definitions: The definitions this process has the code of, by
            ``name@version`` (``saga run``'s, or ``saga api --saga``'s): their graphs.
        accept_timeout: Seconds an action waits for a coordinator to take it.
        payloads: Redacts sensitive data, or opens it for callers who may read it.
    """

    def __init__(
        self,
        client: SagaClient,
        operator: Operator,
        redis: Any,
        settings: Settings,
        definitions: Iterable[SagaDefinition[Any]] = (),
        accept_timeout: float = ACCEPT_TIMEOUT,
    ) -> None:
        self.client = client
        self.store: RedisSagaStore = operator.store
        self.breakers = RedisBreakerStore(redis, namespace=settings.namespace)
        self.definitions = {d.key: d for d in definitions}
        self.accept_timeout = accept_timeout
        # Read at start: a malformed key is one line then, not a 500 at the first read.
        self.payloads = Payloads(settings.keyring())
        self._operator = operator
        self._redis = redis
        self._settings = settings

    async def shapes(self) -> dict[str, DefinitionShape]:
        return await recorded_shapes(self._redis, self._settings.namespace)

    async def names(self) -> set[str]:
        return (await recorded_deployment(self._redis, self._settings.namespace))[0]

    async def queues(self) -> list[str]:
        services = (await recorded_deployment(self._redis, self._settings.namespace))[1]
        return namespace_queues(services)

    @property
    def operator(self) -> Operator:
        """The operator's tools on the same connections (the dashboard reads through them)."""
        return self._operator

    @property
    def settings(self) -> Settings:
        return self._settings

    async def dead_letters(self) -> DeadLetters:
        return await self._operator.dead_letters()

    def policy(self, service: str) -> BreakerPolicy:
        """The thresholds of ``service``'s breaker from the settings, as ``saga breaker``."""
        s = self._settings
        by_service, default = policies(
            list(self.definitions.values()), defaults=s.breaker_defaults, overrides=s.breakers
        )
        return by_service.get(service, default)


Served = NamedDependency[Backend]
"""A route's ``backend`` parameter: the API router provides it."""


@asynccontextmanager
async def open_backend(
    settings: Settings, definitions: Iterable[SagaDefinition[Any]] = ()
) -> AsyncIterator[Backend]:
    """A `Backend` on the deployment ``settings`` points at, closed on exit.

    Raises:
        ServerUnreachableError: Redis does not answer (RabbitMQ: at the first action).
    """
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(open_client(settings))
        operator = await stack.enter_async_context(open_operator(settings))
        redis = redis_client(settings)
        stack.push_async_callback(redis.aclose)
        yield Backend(client, operator, redis, settings, definitions)
