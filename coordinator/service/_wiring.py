"""Settings to connected servers: RabbitMQ and Redis, for the processes (waited
for as ``SAGA_WAIT_FOR_SERVERS`` says; ``participants`` reuses this for
``saga participant``) and for the operator's client.

An operator's command fails at once, in one line, when a server is down: the
client does not wait. It connects to RabbitMQ on its first publish, so reading
commands (``show``, ``list``, ``history``) need only Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any, final

import msgspec

from coordinator._errors import SettingsError
from coordinator.adapters.rabbitmq import RabbitDeadLetters, RabbitTransport, user_of
from coordinator.adapters.redis import RedisSagaStore
from coordinator.adapters.signing import Keyring, KeyringError, SigningTransport
from coordinator.client import DefinitionShape, SagaClient, namespace_queues, shapes_of
from coordinator.core import SagaDefinition
from coordinator.ports import DeadLetters, Exchange, Handler, Resign, Subscription, Transport
from coordinator.service._settings import Settings
from coordinator.service._startup import wait_for_server
from coordinator.service._tls import redis_client, tls_context

__all__ = [
    "Operator",
    "connect_rabbit",
    "check_signers",
    "connect_servers",
    "open_client",
    "open_operator",
    "record_deployment",
    "recorded_deployment",
    "keyring_of",
    "recorded_shapes",
    "resigner",
    "signed",
]


def keyring_of(settings: Settings) -> Keyring | None:
    """The keys ``SAGA_SIGNING_KEYS`` holds; None when signing is off.

    Raises:
        SettingsError: They cannot be used (one line, never a secret).
    """
    value = settings.signing_keys.get_secret_value()
    if not value.strip():
        return None
    try:
        return Keyring.load(value)
    except KeyringError as exc:
        raise SettingsError(str(exc)) from None


def signed(transport: Transport, settings: Settings, *, max_age: timedelta) -> Transport:
    """``transport``, signing and verifying when ``SAGA_SIGNING_KEYS`` is set.

    ``max_age`` is how long the receiver remembers message ids: the oldest
    signature it accepts (the coordinator's ``retention``, a participant's
    ``idempotency_ttl``).

    Raises:
        SettingsError: The keys cannot be used.
    """
    keyring = keyring_of(settings)
    if keyring is None:
        return transport
    return SigningTransport(transport, keyring, max_age=max_age)


def check_signers(transport: Transport, sends: Iterable[tuple[str, str]]) -> None:
    """Refuse to start a process that would sign some of its messages with no key.

    ``sends`` are ``(exchange, routing key)`` pairs standing for what the
    process publishes. Without this, the first such message would fail at
    publish time, long after the start, e.g. in the outbox relay.

    Raises:
        SettingsError: No active key may sign one of them (one line).
    """
    if isinstance(transport, SigningTransport):
        for exchange, key in sends:
            transport.sign(exchange, key, b"", "start-check")


def resigner(transport: Transport) -> Resign | None:
    """What re-signs a dead letter moved back, when ``transport`` signs."""
    return transport.sign if isinstance(transport, SigningTransport) else None


async def connect_rabbit(settings: Settings) -> RabbitTransport:
    """The broker of ``settings``, waited for as ``SAGA_WAIT_FOR_SERVERS`` says."""
    context = tls_context(settings, "amqp")  # refuses verification off before any wait
    return await wait_for_server(
        "RabbitMQ",
        settings.amqp_url,
        "SAGA_AMQP_URL",
        lambda: RabbitTransport.connect(
            settings.amqp_url,
            namespace=settings.namespace,
            delivery_limit=settings.delivery_limit,
            reconnect_interval=settings.reconnect_interval,
            heartbeat=settings.heartbeat,
            ssl_context=context,
        ),
        patience=settings.wait_for_servers,
        tls=context,
    )


async def connect_servers(
    stack: AsyncExitStack, settings: Settings, probe: Callable[[Any], Awaitable[object]]
) -> tuple[RabbitTransport, Any]:
    """Both servers, each waited for; ``probe`` is the first Redis call to make."""
    transport = await connect_rabbit(settings)
    stack.push_async_callback(transport.close)
    redis = redis_client(settings)
    stack.push_async_callback(redis.aclose)
    await wait_for_server(
        "Redis",
        settings.redis_url,
        "SAGA_REDIS_URL",
        lambda: probe(redis),
        patience=settings.wait_for_servers,
        tls=tls_context(settings, "redis"),
    )
    return transport, redis


@asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[SagaClient]:
    """A ``SagaClient`` of the deployment ``settings`` points at, closed on exit.

    Raises:
        ServerUnreachableError: Redis does not answer (RabbitMQ: at the first publish).
    """
    once = settings.model_copy(update={"wait_for_servers": timedelta(0)})
    keyring_of(settings)  # refused before anything connects
    redis = redis_client(settings)
    try:
        await wait_for_server(
            "Redis", settings.redis_url, "SAGA_REDIS_URL", redis.ping, patience=timedelta(0)
        )
        transport = _ConnectedOnFirstUse(once)
        try:
            store = RedisSagaStore(
                redis,
                namespace=settings.namespace,
                buckets=settings.buckets,
                retention=settings.retention,
            )
            messaging = signed(transport, settings, max_age=settings.retention)
            yield SagaClient(messaging, store, namespace=settings.namespace)
        finally:
            await transport.close()
    finally:
        await redis.aclose()


@final
class _ConnectedOnFirstUse:
    """A RabbitMQ transport that connects when first used, once for concurrent callers."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._transport: RabbitTransport | None = None
        self._connecting = asyncio.Lock()

    async def _connected(self) -> RabbitTransport:
        async with self._connecting:  # concurrent first calls share one connection
            if self._transport is None:
                self._transport = await connect_rabbit(self._settings)
        return self._transport

    @property
    def user(self) -> str:
        return user_of(self._settings.amqp_url)

    async def publish(
        self,
        exchange: Exchange,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: Mapping[str, str] | None = None,
        mandatory: bool = True,
        user_id: str | None = None,
    ) -> None:
        transport = await self._connected()
        await transport.publish(
            exchange,
            routing_key,
            body,
            message_id=message_id,
            headers=headers,
            mandatory=mandatory,
            user_id=user_id,
        )

    async def declare(self, queue: str, exchange: Exchange, pattern: str) -> None:
        await (await self._connected()).declare(queue, exchange, pattern)

    async def subscribe(
        self, queue: str, exchange: Exchange, pattern: str, handler: Handler, *, prefetch: int = 64
    ) -> Subscription:
        transport = await self._connected()
        return await transport.subscribe(queue, exchange, pattern, handler, prefetch=prefetch)

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()


# -- what the coordinators run, for the operator's commands -----------------------------
#
# RabbitMQ cannot list a namespace's queues over AMQP (only its management
# plugin can, and it is not always there), and Redis keeps sagas by name and
# status without a list of the names. So each coordinator records, at start,
# the saga names and participant services of its definitions, in two small
# sets: ``saga dead-letters`` knows every commands queue from them, and ``saga
# stuck`` reads each name's index keys directly instead of looking for them.
# It records the shape of each definition version too (a hash, JSON by
# ``name@version``): ``saga stuck`` tells from it which signal a wait expects and
# which service a parked step needs, with no saga code on the operator's machine.


def _services_key(namespace: str) -> str:
    return f"{namespace}:deployment:services"


def _names_key(namespace: str) -> str:
    return f"{namespace}:deployment:sagas"


def _shapes_key(namespace: str) -> str:
    return f"{namespace}:deployment:shapes"


async def record_deployment(
    redis: Any, namespace: str, definitions: Iterable[SagaDefinition[Any]]
) -> None:
    """Add the saga names, services and shapes of ``definitions`` to the namespace's
    record. Every replica records the same: writing it again changes nothing."""
    found = list(definitions)
    names = {d.name for d in found}
    services = {step.service for d in found for step in d.steps.values()}
    shapes = {key: msgspec.json.encode(shape) for key, shape in shapes_of(found).items()}
    async with redis.pipeline(transaction=False) as pipe:
        if names:
            pipe.sadd(_names_key(namespace), *sorted(names))
        if services:
            pipe.sadd(_services_key(namespace), *sorted(services))
        if shapes:
            pipe.hset(_shapes_key(namespace), mapping=shapes)
        await pipe.execute()


async def recorded_deployment(redis: Any, namespace: str) -> tuple[set[str], set[str]]:
    """The saga names and services the coordinators of ``namespace`` recorded."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.smembers(_names_key(namespace))
        pipe.smembers(_services_key(namespace))
        names, services = await pipe.execute()
    return {n.decode() for n in names}, {s.decode() for s in services}


async def recorded_shapes(redis: Any, namespace: str) -> dict[str, DefinitionShape]:
    """The shape of each definition version the coordinators of ``namespace``
    recorded, by ``name@version``; one that cannot be read is left out (unknown)."""
    shapes: dict[str, DefinitionShape] = {}
    for key, raw in (await redis.hgetall(_shapes_key(namespace))).items():
        try:
            shapes[key.decode()] = msgspec.json.decode(raw, type=DefinitionShape)
        except msgspec.DecodeError:  # not JSON, or not a shape this version reads
            continue
    return shapes


@final
class Operator:
    """What the operator's repair commands work on, from ``open_operator``.

    Attributes:
        store: The saga store (states, histories, the index by last change).
        names: The saga names the coordinators recorded (empty if none did).
        shapes: The shapes of the definition versions they recorded, by
            ``name@version`` (empty if none did).
        queues: The namespace's consumed queues: the events queue, and the
            commands queue of each service recorded or given.
    """

    def __init__(
        self,
        store: RedisSagaStore,
        names: set[str],
        shapes: dict[str, DefinitionShape],
        queues: list[str],
        dead_letters: Callable[[], Awaitable[DeadLetters]],
    ) -> None:
        self.store = store
        self.names = names
        self.shapes = shapes
        self.queues = queues
        self._dead_letters = dead_letters

    async def dead_letters(self) -> DeadLetters:
        """The broker's dead letters (RabbitMQ is connected on first use)."""
        return await self._dead_letters()


@asynccontextmanager
async def open_operator(
    settings: Settings, *, services: Iterable[str] = ()
) -> AsyncIterator[Operator]:
    """An `Operator` on the deployment ``settings`` points at, closed on exit.

    ``services`` adds commands queues to those of the recorded services. No
    server is waited for: an operator's command fails at once when one is down.

    Raises:
        ServerUnreachableError: Redis (or, on first use of the dead letters,
            RabbitMQ) does not answer.
    """
    once = settings.model_copy(update={"wait_for_servers": timedelta(0)})
    keyring_of(settings)  # refused before anything connects
    redis = redis_client(settings)
    try:
        await wait_for_server(
            "Redis", settings.redis_url, "SAGA_REDIS_URL", redis.ping, patience=timedelta(0)
        )
        names, recorded = await recorded_deployment(redis, settings.namespace)
        shapes = await recorded_shapes(redis, settings.namespace)
        store = RedisSagaStore(
            redis,
            namespace=settings.namespace,
            buckets=settings.buckets,
            retention=settings.retention,
        )
        transport = _ConnectedOnFirstUse(once)
        # A dead letter moved back is signed again, with this process's keys:
        # the operator's tools run with the trust root's keyring.
        resign = resigner(signed(transport, settings, max_age=settings.retention))

        async def dead_letters() -> DeadLetters:
            return RabbitDeadLetters(await transport._connected(), resign=resign)

        try:
            queues = namespace_queues({*recorded, *services})
            yield Operator(store, names, shapes, queues, dead_letters)
        finally:
            await transport.close()
    finally:
        await redis.aclose()
