"""The operator's client of a deployment, on the ports: the CLI (and scripts) use it.

Commands (start, signal, cancel, retry, pause, resume) are published on the events exchange like any
other input, so whichever coordinator replica takes them handles them; reads go
to the store. It knows no broker and no database: ``coordinator.service``
wires it to RabbitMQ and Redis (``open_client``), a test to the memory adapters.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, final

import msgspec
from opentelemetry import propagate

from contracts import (
    DEFAULT_CODEC,
    CancelSaga,
    Codec,
    PauseSaga,
    ResumeSaga,
    RetrySaga,
    Signal,
    StartSaga,
    routes,
)
from coordinator.core import SagaState
from coordinator.ports import HistoryEntry, Refusal, Refusals, SagaQueries, SagaStore, Transport

__all__ = ["ClientStore", "SagaClient"]

_WAIT_POLL = 0.2


class ClientStore(SagaStore, SagaQueries, Refusals, Protocol):
    """What the client reads: states, histories, the saga index and refused starts."""


@final
class SagaClient:
    """Start, signal, cancel, retry, pause, resume and read the sagas of one deployment.

    Args:
        transport: Where inputs are published (the coordinators' events exchange).
        store: Where the coordinators keep the sagas.
        namespace: The deployment's namespace, for messages to the operator.
        codec: Wire codec of the inputs.
    """

    def __init__(
        self,
        transport: Transport,
        store: ClientStore,
        *,
        namespace: str = "saga",
        codec: Codec = DEFAULT_CODEC,
    ) -> None:
        self._transport = transport
        self._store = store
        self._namespace = namespace
        self._codec = codec

    async def _publish(
        self,
        message: StartSaga | Signal | CancelSaga | RetrySaga | PauseSaga | ResumeSaga,
        routing_key: str,
    ) -> None:
        # The caller's span, if it has one (a web request, a job), becomes the
        # parent of the saga's root or the link of the input's processing.
        headers: dict[str, str] = {}
        propagate.inject(headers)
        await self._transport.publish(
            "events",
            routing_key,
            self._codec.encode(message),
            message_id=message.message_id,
            headers=headers,
            # Signed by the broker: a coordinator checking senders takes control
            # messages only from the users allowed to control.
            user_id=self._transport.user or None,
        )

    @property
    def store(self) -> ClientStore:
        return self._store

    @property
    def namespace(self) -> str:
        return self._namespace

    async def start(
        self,
        name: str,
        data: dict[str, Any],
        saga_id: str | None = None,
        *,
        sent_at: datetime | None = None,
        by: str = "",
    ) -> str:
        """Publish a start and return the saga id; `start_checked` checks it was taken."""
        saga_id = saga_id or uuid.uuid4().hex
        message = StartSaga(
            message_id=f"start:{saga_id}",
            saga_id=saga_id,
            saga_name=name,
            input=data,
            sent_at=sent_at or datetime.now(UTC),
            by=by,
        )
        await self._publish(message, routes.start_key(name))
        return saga_id

    async def signal(self, saga_id: str, name: str, data: dict[str, Any], *, by: str = "") -> str:
        """Publish a signal; returns its message id, which its history entry carries."""
        message = Signal(
            message_id=uuid.uuid4().hex,
            saga_id=saga_id,
            name=name,
            data=data,
            by=by,
            sent_at=datetime.now(UTC),
        )
        await self._publish(message, routes.SIGNAL_KEY)
        return message.message_id

    async def cancel(self, saga_id: str, reason: str, *, by: str = "") -> str:
        """Publish a cancel; returns its message id, which its history entry carries."""
        message = CancelSaga(
            message_id=uuid.uuid4().hex,
            saga_id=saga_id,
            reason=reason,
            by=by,
            sent_at=datetime.now(UTC),
        )
        await self._publish(message, routes.CANCEL_KEY)
        return message.message_id

    async def retry(self, saga_id: str, *, by: str = "") -> str:
        """Publish a retry of a failed saga's compensation; returns its message id."""
        message = RetrySaga(
            message_id=uuid.uuid4().hex, saga_id=saga_id, by=by, sent_at=datetime.now(UTC)
        )
        await self._publish(message, routes.RETRY_KEY)
        return message.message_id

    async def pause(self, saga_id: str, *, by: str = "", hold_deadline: bool = False) -> str:
        """Publish a pause; returns its message id, which its history entry carries."""
        message = PauseSaga(
            message_id=uuid.uuid4().hex,
            saga_id=saga_id,
            by=by,
            hold_deadline=hold_deadline,
            sent_at=datetime.now(UTC),
        )
        await self._publish(message, routes.PAUSE_KEY)
        return message.message_id

    async def resume(self, saga_id: str, *, by: str = "") -> str:
        """Publish a resume; returns its message id, which its history entry carries."""
        message = ResumeSaga(
            message_id=uuid.uuid4().hex, saga_id=saga_id, by=by, sent_at=datetime.now(UTC)
        )
        await self._publish(message, routes.RESUME_KEY)
        return message.message_id

    async def refusal(self, saga_id: str) -> Refusal | None:
        return await self._store.refusal(saga_id)

    async def state(self, saga_id: str) -> SagaState[Any] | None:
        """The saga, whatever its definition: its data as plain JSON values (no code needed)."""
        stored = await self._store.load(saga_id)
        if stored is None:
            return None
        return msgspec.json.decode(stored.state, type=SagaState[Any])

    async def get(self, saga_id: str) -> dict[str, Any] | None:
        """The saga as a JSON object with every field, those at their defaults too."""
        state = await self.state(saga_id)
        return None if state is None else as_json(state)

    async def wait(self, saga_id: str, *, timeout: float) -> SagaState[Any] | None:
        """Poll until the saga has ended, or ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state(saga_id)
            if state is not None and state.terminal:
                return state
            if time.monotonic() > deadline:
                return state
            await asyncio.sleep(_WAIT_POLL)

    async def find(
        self, *, name: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[SagaState[Any]]:
        """Sagas, most recently changed first."""
        found = []
        for saga_id in await self._store.find(name=name, status=status, limit=limit):
            state = await self.state(saga_id)
            if state is not None:
                found.append(state)
        return found

    async def history(self, saga_id: str) -> Sequence[HistoryEntry]:
        return await self._store.history(saga_id)


def as_json(value: object) -> Any:
    """``value`` as JSON values, with every field of each struct.

    The states are stored without their fields at default values (``omit_defaults``),
    and ``msgspec.to_builtins`` omits them the same way; an operator reading a
    saga wants to see every field.
    """
    if isinstance(value, msgspec.Struct):
        return {
            field.encode_name: as_json(getattr(value, field.name))
            for field in msgspec.structs.fields(value)
        }
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    return msgspec.to_builtins(value)
