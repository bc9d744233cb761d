"""A client of a running deployment, for the CLI (and operators' scripts).

Commands (start, signal, cancel) go through RabbitMQ like any other input, so
they are handled by whichever coordinator replica takes them; reads go to Redis.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, final

import msgspec

from contracts import DEFAULT_CODEC, CancelSaga, Signal, StartSaga
from coordinator.adapters.rabbitmq import RabbitTransport
from coordinator.adapters.redis import RedisSagaStore, connect_redis
from coordinator.core import SagaState, StepState
from coordinator.ports import HistoryEntry, Refusal
from coordinator.service._settings import Settings
from coordinator.service._startup import wait_for_server

__all__ = ["SagaClient"]


def _defaults(struct: type[msgspec.Struct]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for f in msgspec.structs.fields(struct):
        if f.default is not msgspec.NODEFAULT:
            found[f.encode_name] = msgspec.to_builtins(f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            found[f.encode_name] = msgspec.to_builtins(f.default_factory())
    return found


_SAGA_DEFAULTS: Final = _defaults(SagaState)
_STEP_DEFAULTS: Final = _defaults(StepState)


def _fill(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    for name, default in defaults.items():
        if name not in values:
            values[name] = default.copy() if isinstance(default, dict | list) else default
    return values


@final
class SagaClient:
    """Start, signal, cancel and read sagas of the deployment ``settings`` points at."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._transport: RabbitTransport | None = None
        self._redis: Any = None
        self._store: RedisSagaStore | None = None
        self._connecting = asyncio.Lock()

    async def __aenter__(self) -> SagaClient:
        s = self._settings
        self._redis = connect_redis(s.redis_url)
        try:
            # An operator's command fails at once, in one line, when Redis is down.
            await wait_for_server(
                "Redis", s.redis_url, "SAGA_REDIS_URL", self._redis.ping, patience=timedelta(0)
            )
        except BaseException:
            await self._redis.aclose()
            raise
        self._store = RedisSagaStore(
            self._redis, namespace=s.namespace, buckets=s.buckets, retention=s.retention
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._transport is not None:
            await self._transport.close()
        await self._redis.aclose()

    async def _publish(self, message: StartSaga | Signal | CancelSaga, routing_key: str) -> None:
        async with self._connecting:  # concurrent first calls share one connection
            if self._transport is None:
                s = self._settings
                self._transport = await wait_for_server(
                    "RabbitMQ",
                    s.amqp_url,
                    "SAGA_AMQP_URL",
                    lambda: RabbitTransport.connect(
                        s.amqp_url,
                        namespace=s.namespace,
                        delivery_limit=s.delivery_limit,
                        reconnect_interval=s.reconnect_interval,
                        heartbeat=s.heartbeat,
                    ),
                    patience=timedelta(0),
                )
        await self._transport.publish(
            "events", routing_key, DEFAULT_CODEC.encode(message), message_id=message.message_id
        )

    @property
    def store(self) -> RedisSagaStore:
        assert self._store is not None, "use the client in an async with block"
        return self._store

    @property
    def namespace(self) -> str:
        return self._settings.namespace

    async def start(
        self,
        name: str,
        data: dict[str, Any],
        saga_id: str | None = None,
        *,
        sent_at: datetime | None = None,
    ) -> str:
        """Publish a start and return the saga id; `start_checked` checks it was taken."""
        saga_id = saga_id or uuid.uuid4().hex
        message = StartSaga(
            message_id=f"start:{saga_id}",
            saga_id=saga_id,
            saga_name=name,
            input=data,
            sent_at=sent_at or datetime.now(UTC),
        )
        await self._publish(message, f"{name}.StartSaga")
        return saga_id

    async def signal(self, saga_id: str, name: str, data: dict[str, Any]) -> str:
        """Publish a signal; returns its message id, which its history entry carries."""
        message = Signal(
            message_id=uuid.uuid4().hex,
            saga_id=saga_id,
            name=name,
            data=data,
            sent_at=datetime.now(UTC),
        )
        await self._publish(message, "signal.Signal")
        return message.message_id

    async def cancel(self, saga_id: str, reason: str) -> str:
        """Publish a cancel; returns its message id, which its history entry carries."""
        message = CancelSaga(
            message_id=uuid.uuid4().hex, saga_id=saga_id, reason=reason, sent_at=datetime.now(UTC)
        )
        await self._publish(message, "cancel.CancelSaga")
        return message.message_id

    async def refusal(self, saga_id: str) -> Refusal | None:
        return await self.store.refusal(saga_id)

    async def get(self, saga_id: str) -> dict[str, Any] | None:
        """The saga's state as JSON, whatever its definition (no code needed to read it)."""
        stored = await self.store.load(saga_id)
        if stored is None:
            return None
        state: dict[str, Any] = msgspec.json.decode(stored.state)
        # Stored without the fields at their defaults; shown with every field.
        for step in state.get("steps", {}).values():
            _fill(step, _STEP_DEFAULTS)
        return _fill(state, _SAGA_DEFAULTS)

    async def wait(self, saga_id: str, *, timeout: float) -> dict[str, Any] | None:
        """Poll until the saga has ended, or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.get(saga_id)
            if state is not None and state["status"] in SagaState.TERMINAL:
                return state
            if time.monotonic() > deadline:
                return state
            await asyncio.sleep(0.2)

    async def find(
        self, *, name: str | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        found = []
        for saga_id in await self.store.find(name=name, status=status, limit=limit):
            state = await self.get(saga_id)
            if state is not None:
                found.append(state)
        return found

    async def history(self, saga_id: str) -> Sequence[HistoryEntry]:
        return await self.store.history(saga_id)
