"""The coordinator runtime: receive -> load -> decide -> commit -> publish -> ack.

Every input (a reply, a start, a signal, a cancel, a due timer) takes the same
path. The state, its history line, the commands to send and the timers change in
one atomic commit guarded by the revision that was loaded (``_transition.py``);
only after the commit are the commands published (the outbox) and the delivery
acked, so a crash at any point leaves either nothing done or a committed
transition whose messages the relay publishes later.

This module is the coordinator's face: its lifecycle, the events queue, and the
operations an embedding application calls (start, signal, cancel, retry, pause, resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Collection, Iterable
from datetime import timedelta
from typing import Any, final

import msgspec

from contracts import (
    DEFAULT_CODEC,
    LIFECYCLE_EVENTS,
    CancelSaga,
    Codec,
    ContractError,
    CoordinatorInbound,
    PauseSaga,
    ResumeSaga,
    RetrySaga,
    Signal,
    StartSaga,
    TaskCompleted,
    TaskFailed,
    routes,
)
from coordinator._errors import SagaRefusedError, StoreUnavailableError, UnknownSagaError
from coordinator.backoff import retry_through_outage
from coordinator.core import (
    CancelRequested,
    Decision,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    SagaDefinition,
    SagaState,
    ServiceRecovered,
    SignalReceived,
    TimerFired,
)
from coordinator.ports import Clock, Delivery, Refusal, Subscription, Transport
from coordinator.runtime._health import FixedHealth, ServiceHealth
from coordinator.runtime._outbox import OutboxPublisher
from coordinator.runtime._registry import Registry
from coordinator.runtime._transition import Store, Transitions
from coordinator.runtime._translate import MakeInput, input_for, request_name

__all__ = ["Coordinator"]

_log = logging.getLogger("coordinator")

EVENTS_QUEUE = routes.EVENTS_QUEUE


@final
class Coordinator:
    """Runs saga definitions against a transport and a store.

    Args:
        definitions: The sagas this coordinator can run (every version still in flight).
        transport: Where commands go and replies come from.
        store: Saga state, history, outbox and timers.
        clock: The time source; a virtual one in tests.
        codec: Wire codec (size limit included).
        services_down: Services not to send to now, when there are no ``breakers``.
        breakers: The circuit breakers (``coordinator.breakers.BreakerBoard``): they
            say which services are down and hear every outcome (``_health``).
        timer_interval: How often due timers (and outbox entries left behind) are polled.
        relay_after: How old an unpublished outbox entry must be before the relay
            publishes it (entries are normally published right after their commit).
        store_outage: How long a message is held while the store is unreachable
            before it goes back to the broker.
        cache_size: Sagas whose last committed state this replica keeps, to skip a
            load (0 disables it).
        prefetch: Events handled at once by this replica.
        announce: The lifecycle events published on the ``lifecycle`` exchange
            (all of them by default); the history records every one either way.
    """

    def __init__(
        self,
        definitions: Iterable[SagaDefinition[Any]],
        *,
        transport: Transport,
        store: Store,
        clock: Clock,
        codec: Codec = DEFAULT_CODEC,
        services_down: Callable[[], frozenset[str]] = frozenset,
        breakers: ServiceHealth | None = None,
        timer_interval: timedelta = timedelta(seconds=0.2),
        relay_after: timedelta = timedelta(seconds=5),
        store_outage: timedelta = timedelta(minutes=5),
        cache_size: int = 10_000,
        prefetch: int = 64,
        announce: Collection[str] = LIFECYCLE_EVENTS,
    ) -> None:
        unknown = set(announce) - LIFECYCLE_EVENTS
        if unknown:
            raise ValueError(
                f"no lifecycle event {', '.join(sorted(unknown))}; "
                f"they are {', '.join(sorted(LIFECYCLE_EVENTS))}"
            )
        self._registry = Registry(definitions)
        self._transport = transport
        self._store = store
        self._clock = clock
        self._codec = codec
        self._timer_interval = timer_interval
        self._store_outage = store_outage
        self._prefetch = prefetch
        self._outbox = OutboxPublisher(transport, store, clock, relay_after=relay_after)
        self._transitions = Transitions(
            self._registry,
            store=store,
            clock=clock,
            codec=codec,
            outbox=self._outbox,
            health=breakers if breakers is not None else FixedHealth(services_down),
            announce=announce,
            cache_size=cache_size,
        )
        self._subscription: Subscription | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------

    async def start(self, *, loops: bool = True) -> None:
        """Consume events, and (unless ``loops`` is false) poll timers and the outbox.

        The command queue of every participant service the definitions use is
        declared first, so commands wait there for a participant that has not
        started yet instead of bouncing as unroutable.
        """
        for service in sorted(self._registry.services):
            await self._transport.declare(
                routes.commands_queue(service), "commands", routes.commands_binding(service)
            )
        self._subscription = await self._transport.subscribe(
            EVENTS_QUEUE, "events", routes.EVENTS_BINDING, self.handle, prefetch=self._prefetch
        )
        self._stopping = False
        if loops:
            self._outbox.start()
            self._loops = [
                asyncio.create_task(self._every(self.fire_due_timers), name="saga-timers"),
                asyncio.create_task(self._every(self.relay), name="saga-relay"),
            ]

    async def stop(self) -> None:
        """Stop consuming, let in-flight transitions finish, stop the loops."""
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None
        # The loops also check this flag: a cancel that lands inside a Redis call
        # can be swallowed by the client (asyncio.wait_for on Python 3.11).
        self._stopping = True
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops = []
        await self._outbox.stop()

    async def _every(self, job: Callable[[], Any]) -> None:
        while not self._stopping:
            try:
                await job()
            except Exception:  # an outage must not end the loop
                _log.warning("%s failed; trying again", job.__name__, exc_info=True)
            await self._clock.sleep(self._timer_interval)

    # -- inputs -----------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        """Handle one message from the events queue, then settle it.

        While the store is unreachable the message is held and retried with
        backoff (up to ``store_outage``), not returned to the broker, where each
        failure would spend one of its deliveries.
        """
        try:
            message = self._codec.decode_inbound(delivery.body)
        except ContractError as exc:
            await delivery.dead_letter(exc.reason, str(exc))
            return
        await retry_through_outage(
            lambda: self._handle(delivery, message),
            is_outage=lambda exc: isinstance(exc, StoreUnavailableError),
            sleep=self._clock.sleep,
            patience=self._store_outage,
            before_sleep=lambda retry: _log.warning(
                "store unavailable; retrying %s in %.2fs",
                delivery.message_id,
                retry.upcoming_sleep,
            ),
        )

    async def _handle(self, delivery: Delivery, message: CoordinatorInbound) -> None:
        try:
            match message:
                case StartSaga():
                    await self.start_saga(
                        message.saga_name, message.saga_id, message.input, message.message_id
                    )
                case (
                    TaskCompleted()
                    | TaskFailed()
                    | Signal()
                    | CancelSaga()
                    | RetrySaga()
                    | PauseSaga()
                    | ResumeSaga()
                ):
                    decision = await self._transitions.apply(
                        message.saga_id, message.message_id, input_for(message)
                    )
                    if decision.refused and not isinstance(message, TaskCompleted | TaskFailed):
                        # The refusal is in the history already; the sender finds the
                        # message with the same reason among the dead letters.
                        what = request_name(message)
                        await delivery.dead_letter(f"{what}_refused", decision.refused)
                        return
        except UnknownSagaError as exc:
            await self._refused(delivery, message, "unknown_saga", str(exc))
            return
        except (msgspec.ValidationError, ContractError) as exc:
            await self._refused(delivery, message, "schema_mismatch", str(exc))
            return
        await delivery.ack()

    async def _refused(
        self, delivery: Delivery, message: CoordinatorInbound, reason: str, detail: str
    ) -> None:
        if isinstance(message, StartSaga):
            # Kept for the client waiting to hear whether its start was taken.
            refusal = Refusal(reason=reason, detail=detail, sent_at=message.sent_at)
            await self._store.record_refusal(message.saga_id, refusal)
        await delivery.dead_letter(reason, detail)

    async def start_saga(
        self, name: str, saga_id: str, data: object, message_id: str | None = None
    ) -> tuple[SagaState[Any], bool]:
        """Start a saga, idempotently by its id.

        Returns the saga's state and whether this call created it; a second start
        with the same id changes nothing and returns the existing saga.

        Raises:
            UnknownSagaError: no definition is called ``name``.
            msgspec.ValidationError: ``data`` does not fit the saga's data type.
        """
        definition = self._registry.latest(name)
        value = msgspec.convert(data, definition.data_type, from_attributes=True)
        return await self._transitions.start(
            definition, saga_id, value, message_id or f"start:{saga_id}"
        )

    async def signal(
        self, saga_id: str, name: str, data: dict[str, Any], message_id: str
    ) -> Decision[Any]:
        """Send a signal to a saga's wait.

        Raises:
            UnknownSagaError: no saga has that id.
            SagaRefusedError: the saga cannot take it (the data does not fit the
                wait, no wait has that name, the saga has ended); it is recorded
                in the history and the saga is as it was.
        """
        return await self._taken(
            saga_id,
            message_id,
            lambda at, down: SignalReceived(
                message_id=message_id, name=name, data=data, at=at, services_down=down
            ),
        )

    async def cancel(self, saga_id: str, reason: str, message_id: str) -> Decision[Any]:
        """Stop a saga and compensate what it did.

        Raises:
            UnknownSagaError: no saga has that id.
            SagaRefusedError: the saga has ended, is compensating already or is
                past its pivot.
        """
        return await self._taken(
            saga_id,
            message_id,
            lambda at, down: CancelRequested(reason=reason, at=at, services_down=down),
        )

    async def retry(self, saga_id: str, message_id: str, *, by: str = "") -> Decision[Any]:
        """Try a failed saga's failed compensations again, where it stopped.

        Raises:
            UnknownSagaError: no saga has that id.
            SagaRefusedError: the saga has no failed compensation.
        """
        return await self._taken(
            saga_id,
            message_id,
            lambda at, down: RetryRequested(by=by, at=at, services_down=down),
        )

    async def pause(
        self, saga_id: str, message_id: str, *, by: str = "", hold_deadline: bool = False
    ) -> Decision[Any]:
        """Stop a saga from sending anything until it is resumed.

        Raises:
            UnknownSagaError: no saga has that id.
            SagaRefusedError: the saga has ended, or is paused already.
        """
        return await self._taken(
            saga_id,
            message_id,
            lambda at, down: PauseRequested(
                by=by, hold_deadline=hold_deadline, at=at, services_down=down
            ),
        )

    async def resume(self, saga_id: str, message_id: str, *, by: str = "") -> Decision[Any]:
        """Let a paused saga go on with what it received while paused.

        Raises:
            UnknownSagaError: no saga has that id.
            SagaRefusedError: the saga is not paused.
        """
        return await self._taken(
            saga_id,
            message_id,
            lambda at, down: ResumeRequested(by=by, at=at, services_down=down),
        )

    async def _taken(self, saga_id: str, message_id: str, make: MakeInput) -> Decision[Any]:
        """Apply an operator's input; a refusal (already in the history) is raised."""
        decision = await self._transitions.apply(saga_id, message_id, make)
        if decision.refused:
            raise SagaRefusedError(saga_id, decision.refused)
        return decision

    async def fire_due_timers(self, limit: int = 256) -> int:
        """Turn every due timer into a ``TimerFired`` input; returns how many fired."""
        due = await self._store.due(self._clock.now(), limit)
        for saga_id, timer in due:
            await self._transitions.apply(saga_id, f"timer:{timer}", _fired(timer))
        return len(due)

    async def resume_parked(self, service: str, limit: int = 100) -> int:
        """Send ``ServiceRecovered`` to at most ``limit`` sagas parked for ``service``
        (the store's parked index); returns how many there were.

        Each saga takes it through the normal path, with the breakers' view of the
        moment: a saga the breakers still hold back parks again.
        """
        resumed = 0
        for saga_id in await self._store.parked(service, limit):
            await self._transitions.apply(
                saga_id,
                f"recovered:{service}:{uuid.uuid4().hex}",
                lambda at, down: ServiceRecovered(service=service, at=at, services_down=down),
            )
            resumed += 1
        return resumed

    async def relay(self, limit: int = 256) -> int:
        """Publish outbox entries left behind (a crash or a broker error after commit)."""
        return await self._outbox.relay(limit)

    # -- reading ------------------------------------------------------------------------

    def definition(self, name: str, version: int | None = None) -> SagaDefinition[Any]:
        """``name`` at ``version`` (the latest when None); raises ``UnknownSagaError``."""
        return self._registry.definition(name, version)

    async def load(self, saga_id: str) -> SagaState[Any] | None:
        """The saga as stored, its data in its definition's type; None if there is none."""
        return await self._transitions.load(saga_id)


def _fired(timer: str) -> MakeInput:
    return lambda at, down: TimerFired(timer=timer, at=at, services_down=down)
