"""The coordinator runtime: receive -> load -> decide -> commit -> publish -> ack.

Every input (a reply, a start, a signal, a cancel, a due timer) takes the same
path. The state, its history line, the commands to send and the timers change in
one atomic commit guarded by the revision that was loaded (``_transition.py``);
only after the commit are the commands published (the outbox) and the delivery
acked, so a crash at any point leaves either nothing done or a committed
transition whose messages the relay publishes later.

This module is the coordinator's face: its lifecycle and the operations an
embedding application calls (start, signal, cancel, retry, pause, resume); the
events queue's messages are taken in ``_inbox``.
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
    Codec,
    routes,
)
from coordinator._dsl import sensitive_of
from coordinator._errors import (
    SagaRefusedError,
    UnknownVersionError,
)
from coordinator._sealing import Keyring, Sealer
from coordinator._tasks import stop_task
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
from coordinator.ports import Clock, DeadLetters, Delivery, Subscription, Transport
from coordinator.runtime._health import FixedHealth, ServiceHealth
from coordinator.runtime._inbox import Inbox
from coordinator.runtime._outbox import OutboxPublisher
from coordinator.runtime._registry import Registry, check_keys
from coordinator.runtime._senders import SenderCheck
from coordinator.runtime._transition import Store, Transitions
from coordinator.runtime._translate import MakeInput
from coordinator.runtime._versions import check_versions, redrive_loaded
from coordinator.telemetry import Telemetry

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
        telemetry: Where spans and metrics go (none by default).
        dead_letters: The broker's dead letters: at start, those of the events queue
            dead-lettered ``unknown_version`` for a saga on a version given here
            are moved back (``_versions``).
        senders: Who may send replies and control messages (``_senders``); None:
            anyone (no sender check).
        keyring: The keys sensitive saga data is sealed with (``coordinator._sealing``);
            required when a definition marks fields sensitive.

    Raises:
        SettingsError: a definition marks fields sensitive and no ``keyring`` is given.
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
        telemetry: Telemetry | None = None,
        dead_letters: DeadLetters | None = None,
        keyring: Keyring | None = None,
        senders: SenderCheck | None = None,
    ) -> None:
        definitions = list(definitions)
        check_keys(definitions, keyring)
        sealer = Sealer(keyring, {(d.name, d.version): sensitive_of(d) for d in definitions})
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
        self._prefetch = prefetch
        self._telemetry = telemetry if telemetry is not None else Telemetry()
        self._outbox = OutboxPublisher(
            transport,
            store,
            clock,
            relay_after=relay_after,
            telemetry=self._telemetry,
            sealer=sealer,
        )
        self._transitions = Transitions(
            self._registry,
            store=store,
            clock=clock,
            codec=codec,
            outbox=self._outbox,
            health=breakers if breakers is not None else FixedHealth(services_down),
            announce=announce,
            cache_size=cache_size,
            telemetry=self._telemetry,
            sealer=sealer,
        )
        self._dead_letters = dead_letters
        self._inbox = Inbox(
            self._transitions,
            store=store,
            clock=clock,
            codec=codec,
            telemetry=self._telemetry,
            store_outage=store_outage,
            start_saga=self.start_saga,
            senders=senders,
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

        Raises:
            UnknownVersionError: sagas are in flight on a definition version this
                coordinator was not given; nothing was started.
        """
        await check_versions(self._store, self._registry.versions)
        for service in sorted(self._registry.services):
            await self._transport.declare(
                routes.commands_queue(service), "commands", routes.commands_binding(service)
            )
        self._subscription = await self._transport.subscribe(
            EVENTS_QUEUE, "events", routes.EVENTS_BINDING, self.handle, prefetch=self._prefetch
        )
        if self._dead_letters is not None:
            await redrive_loaded(self._dead_letters, self._store, self._codec, self._registry)
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
        self._stopping = True  # no new round starts, cancelled or not
        for task in self._loops:
            await stop_task(task)
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
        """Handle one message from the events queue, then settle it (``_inbox``)."""
        await self._inbox.handle(delivery)

    async def start_saga(
        self,
        name: str,
        saga_id: str,
        data: object,
        message_id: str | None = None,
        *,
        delivery: Delivery | None = None,
        by: str = "",
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
            definition, saga_id, value, message_id or f"start:{saga_id}", delivery, by=by
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
            "signal",
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
            "cancel",
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
            "retry",
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
            "pause",
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
            "resume",
            lambda at, down: ResumeRequested(by=by, at=at, services_down=down),
        )

    async def _taken(
        self, saga_id: str, message_id: str, what: str, make: MakeInput
    ) -> Decision[Any]:
        """Apply an operator's input; a refusal (already in the history) is raised."""
        decision = await self._transitions.apply(saga_id, message_id, make, what=what)
        if decision.refused:
            raise SagaRefusedError(saga_id, decision.refused)
        return decision

    async def fire_due_timers(self, limit: int = 256) -> int:
        """Turn every due timer into a ``TimerFired`` input; returns how many fired."""
        fired = 0
        for saga_id, timer, at in await self._store.due(self._clock.now(), limit):
            with contextlib.suppress(UnknownVersionError):  # a replica that has it fires it
                await self._transitions.apply(
                    saga_id, f"timer:{timer}", _fired(timer), what="timeout"
                )
                self._telemetry.timer_fired(self._clock.now() - at)
                fired += 1
        return fired

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
                what="recovered",
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
