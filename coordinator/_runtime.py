"""The coordinator runtime: receive -> load -> decide -> commit -> publish -> ack.

Every input (a reply, a start, a signal, a cancel, a due timer) takes the same
path. The state, its history line, the commands to send and the timers change in
one atomic commit guarded by the revision that was loaded; a conflict means
another replica got there first, so the saga is loaded and decided again. Only
after the commit are the commands published (the outbox) and the delivery acked,
so a crash at any point leaves either nothing done or a committed transition
whose messages the relay publishes later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, Protocol, final

import msgspec

from contracts import (
    DEFAULT_CODEC,
    CancelSaga,
    Codec,
    Command,
    ContractError,
    CoordinatorInbound,
    SagaLifecycle,
    Signal,
    StartSaga,
    TaskCompleted,
    TaskFailed,
)
from coordinator._errors import ConcurrencyError, StoreUnavailableError, UnknownSagaError
from coordinator._ports import (
    Clock,
    Commit,
    Delivery,
    HistoryEntry,
    OutboxEntry,
    OutboxStore,
    SagaQueries,
    SagaStore,
    Subscription,
    TimerStore,
    Transport,
)
from coordinator.core import (
    CancelRequested,
    CancelTimer,
    Decision,
    Dispatch,
    Input,
    Notify,
    RetryRequested,
    SagaDefinition,
    SagaState,
    SignalReceived,
    Start,
    StartTimer,
    StepCompleted,
    StepFailed,
    TimerFired,
    decide,
    start,
)

__all__ = ["Coordinator", "Store"]

_log = logging.getLogger("coordinator")

EVENTS_QUEUE = "coordinator.events"
_CAS_ATTEMPTS = 20


class Store(SagaStore, OutboxStore, TimerStore, SagaQueries, Protocol):
    """What the coordinator needs from its storage."""


class _Header(msgspec.Struct):
    name: str
    version: int


@final
class Coordinator:
    """Runs saga definitions against a transport and a store.

    Args:
        definitions: The sagas this coordinator can run (every version still in flight).
        transport: Where commands go and replies come from.
        store: Saga state, history, outbox and timers.
        clock: The time source; a virtual one in tests.
        codec: Wire codec (size limit included).
        services_down: The circuit breakers' view: services not to send to now.
        timer_interval: How often due timers are polled.
        relay_after: How old an unpublished outbox entry must be before the relay
            publishes it (entries are normally published right after their commit).
        store_outage: How long a message is held while the store is unreachable
            before it goes back to the broker.
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
        timer_interval: float = 0.2,
        relay_after: timedelta = timedelta(seconds=5),
        store_outage: timedelta = timedelta(minutes=5),
    ) -> None:
        self._defs: dict[tuple[str, int], SagaDefinition[Any]] = {}
        self._latest: dict[str, SagaDefinition[Any]] = {}
        for d in definitions:
            self._defs[(d.name, d.version)] = d
            if d.name not in self._latest or self._latest[d.name].version < d.version:
                self._latest[d.name] = d
        self._transport = transport
        self._store = store
        self._clock = clock
        self._codec = codec
        self._services_down = services_down
        self._timer_interval = timer_interval
        self._relay_after = relay_after
        self._store_outage = store_outage
        self._subscription: Subscription | None = None
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------

    async def start(self, *, loops: bool = True) -> None:
        """Consume events, and (unless ``loops`` is false) poll timers and the outbox.

        The command queue of every participant service the definitions use is
        declared first, so commands wait there for a participant that has not
        started yet instead of bouncing as unroutable.
        """
        services = {s.service for d in self._defs.values() for s in d.steps.values()}
        for service in sorted(services):
            await self._transport.declare(f"{service}.commands", "commands", f"{service}.*")
        self._subscription = await self._transport.subscribe(
            EVENTS_QUEUE, "events", "#", self.handle
        )
        if loops:
            self._loops = [
                asyncio.create_task(self._every(self.fire_due_timers), name="saga-timers"),
                asyncio.create_task(self._every(self.relay), name="saga-relay"),
            ]

    async def stop(self) -> None:
        """Stop consuming, let in-flight transitions finish, stop the loops."""
        if self._subscription is not None:
            await self._subscription.stop()
            self._subscription = None
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops = []

    async def _every(self, job: Callable[[], Any]) -> None:
        while True:
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
        delay, waited = 0.05, 0.0
        while True:
            try:
                await self._handle(delivery, message)
                return
            except StoreUnavailableError:
                if waited >= self._store_outage.total_seconds():
                    raise
                _log.warning("store unavailable; retrying %s in %.2fs", delivery.message_id, delay)
                await self._clock.sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)

    async def _handle(self, delivery: Delivery, message: CoordinatorInbound) -> None:
        try:
            match message:
                case StartSaga():
                    await self.start_saga(
                        message.saga_name, message.saga_id, message.input, message.message_id
                    )
                case TaskCompleted() | TaskFailed() | Signal() | CancelSaga():
                    await self._apply(message.saga_id, message.message_id, _input_for(message))
        except UnknownSagaError as exc:
            await delivery.dead_letter("unknown_saga", str(exc))
            return
        except (msgspec.ValidationError, ContractError) as exc:
            await delivery.dead_letter("schema_mismatch", str(exc))
            return
        await delivery.ack()

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
        definition = self._latest.get(name)
        if definition is None:
            raise UnknownSagaError(f"no saga definition named {name!r}")
        value = msgspec.convert(data, definition.data_type, from_attributes=True)
        for _ in range(_CAS_ATTEMPTS):
            existing = await self.load(saga_id)
            if existing is not None:
                return existing, False
            inp = Start(
                saga_id=saga_id, data=value, at=self._clock.now(), services_down=self._down()
            )
            decision = start(definition, inp)
            outcome = await self._commit(
                definition, None, inp, decision, message_id or f"start:{saga_id}"
            )
            if outcome == "committed":
                return decision.state, True
        raise ConcurrencyError(f"saga {saga_id!r}: could not start it after {_CAS_ATTEMPTS} tries")

    async def signal(
        self, saga_id: str, name: str, data: dict[str, Any], message_id: str
    ) -> Decision[Any]:
        return await self._apply(
            saga_id,
            message_id,
            lambda at, down: SignalReceived(
                message_id=message_id, name=name, data=data, at=at, services_down=down
            ),
        )

    async def cancel(self, saga_id: str, reason: str, message_id: str) -> Decision[Any]:
        return await self._apply(
            saga_id,
            message_id,
            lambda at, down: CancelRequested(reason=reason, at=at, services_down=down),
        )

    async def retry(self, saga_id: str, message_id: str) -> Decision[Any]:
        return await self._apply(
            saga_id, message_id, lambda at, down: RetryRequested(at=at, services_down=down)
        )

    async def fire_due_timers(self, limit: int = 256) -> int:
        """Turn every due timer into a ``TimerFired`` input; returns how many fired."""
        due = await self._store.due(self._clock.now(), limit)
        for saga_id, timer in due:
            await self._apply(
                saga_id,
                f"timer:{timer}",
                lambda at, down, t=timer: TimerFired(timer=t, at=at, services_down=down),
            )
        return len(due)

    async def relay(self, limit: int = 256) -> int:
        """Publish outbox entries left behind (a crash or a broker error after commit)."""
        entries = await self._store.pending(self._clock.now() - self._relay_after, limit)
        await self._publish(entries)
        return len(entries)

    # -- reading ------------------------------------------------------------------------

    def definition(self, name: str, version: int | None = None) -> SagaDefinition[Any]:
        found = self._latest.get(name) if version is None else self._defs.get((name, version))
        if found is None:
            raise UnknownSagaError(
                f"no saga definition {name!r}" + (f" v{version}" if version else "")
            )
        return found

    async def load(self, saga_id: str) -> SagaState[Any] | None:
        stored = await self._store.load(saga_id)
        if stored is None:
            return None
        header = msgspec.json.decode(stored.state, type=_Header)
        definition = self.definition(header.name, header.version)
        return msgspec.json.decode(stored.state, type=SagaState[definition.data_type])  # type: ignore[name-defined]

    # -- the transition -----------------------------------------------------------------

    def _down(self) -> frozenset[str]:
        return self._services_down()

    async def _apply(
        self, saga_id: str, dedupe_id: str, make: Callable[..., Input]
    ) -> Decision[Any]:
        for _ in range(_CAS_ATTEMPTS):
            state = await self.load(saga_id)
            if state is None:
                raise UnknownSagaError(f"no saga with id {saga_id!r}")
            definition = self.definition(state.name, state.version)
            inp = make(self._clock.now(), self._down())
            decision = decide(definition, state, inp)
            if not decision.changed:
                timer = inp.timer if isinstance(inp, TimerFired) else None
                await self._store.record(
                    saga_id, _history(state.revision, inp, decision), timer=timer
                )
                return decision
            outcome = await self._commit(definition, state, inp, decision, dedupe_id)
            if outcome != "conflict":
                return decision
        raise ConcurrencyError(f"saga {saga_id!r}: still conflicting after {_CAS_ATTEMPTS} tries")

    async def _commit(
        self,
        definition: SagaDefinition[Any],
        before: SagaState[Any] | None,
        inp: Input | Start[Any],
        decision: Decision[Any],
        dedupe_id: str,
    ) -> str:
        state = decision.state
        outbox: list[OutboxEntry] = []
        due: dict[str, Any] = {}
        cancelled: list[str] = [inp.timer] if isinstance(inp, TimerFired) else []
        for effect in decision.effects:
            match effect:
                case Dispatch():
                    outbox.append(self._command(state, effect, dedupe_id))
                case Notify():
                    outbox.append(self._lifecycle(state, effect))
                case StartTimer():
                    due[effect.timer] = effect.due
                case CancelTimer():
                    due.pop(effect.timer, None)
                    cancelled.append(effect.timer)
        result = await self._store.commit(
            Commit(
                saga_id=state.saga_id,
                name=definition.name,
                status=state.status,
                expected_revision=before.revision if before is not None else -1,
                revision=state.revision,
                state=msgspec.json.encode(state),
                dedupe_id=dedupe_id,
                history=_history(state.revision, inp, decision),
                outbox=outbox,
                timers_due=due,
                timers_cancelled=cancelled,
            )
        )
        if result == "committed":
            await self._publish(outbox)
        return result

    def _command(self, state: SagaState[Any], effect: Dispatch, causation_id: str) -> OutboxEntry:
        now = self._clock.now()
        command = Command(
            message_id=effect.message_id,
            idempotency_key=effect.idempotency_key,
            saga_id=state.saga_id,
            saga_name=state.name,
            saga_version=state.version,
            step=effect.step,
            attempt=effect.attempt,
            kind=effect.kind,
            service=effect.service,
            command=effect.command,
            payload=msgspec.json.decode(effect.payload),
            causation_id=causation_id,
            sent_at=now,
            deadline=effect.deadline,
        )
        return OutboxEntry(
            saga_id=state.saga_id,
            message_id=effect.message_id,
            exchange="commands",
            routing_key=command.routing_key,
            body=self._codec.encode(command),
            created_at=now,
        )

    def _lifecycle(self, state: SagaState[Any], effect: Notify) -> OutboxEntry:
        now = self._clock.now()
        message_id = f"{state.saga_id}:{effect.event}:{state.revision}"
        event = SagaLifecycle(
            message_id=message_id,
            saga_id=state.saga_id,
            saga_name=state.name,
            saga_version=state.version,
            event=effect.event,
            reason=effect.reason,
            data=msgspec.to_builtins(state.data),
            sent_at=now,
        )
        return OutboxEntry(
            saga_id=state.saga_id,
            message_id=message_id,
            exchange="lifecycle",
            routing_key=f"{state.name}.{effect.event}",
            body=self._codec.encode(event),
            created_at=now,
        )

    async def _publish(self, entries: Sequence[OutboxEntry]) -> None:
        """Publish committed entries; whatever fails stays in the outbox for the relay."""
        sent: list[OutboxEntry] = []
        for entry in entries:
            try:
                await self._transport.publish(
                    entry.exchange,
                    entry.routing_key,
                    entry.body,
                    message_id=entry.message_id,
                    headers=entry.headers,
                    mandatory=entry.exchange != "lifecycle",
                )
            except Exception:
                _log.warning(
                    "publish of %s failed; left in the outbox", entry.message_id, exc_info=True
                )
                continue
            sent.append(entry)
        if sent:
            await self._store.done(sent)


def _input_for(message: TaskCompleted | TaskFailed | Signal | CancelSaga) -> Callable[..., Input]:
    match message:
        case TaskCompleted():
            return lambda at, down: StepCompleted(
                message_id=message.message_id,
                step=message.step,
                kind=message.kind,
                attempt=message.attempt,
                result=message.result,
                at=at,
                services_down=down,
            )
        case TaskFailed():
            return lambda at, down: StepFailed(
                message_id=message.message_id,
                step=message.step,
                kind=message.kind,
                attempt=message.attempt,
                error_type=message.error_type,
                error_message=message.error_message,
                retryable=message.retryable,
                at=at,
                services_down=down,
            )
        case Signal():
            return lambda at, down: SignalReceived(
                message_id=message.message_id,
                name=message.name,
                data=message.data,
                at=at,
                services_down=down,
            )
        case CancelSaga():
            return lambda at, down: CancelRequested(
                reason=message.reason, at=at, services_down=down
            )


def _history(revision: int, inp: Input | Start[Any], decision: Decision[Any]) -> HistoryEntry:
    return HistoryEntry(
        at=inp.at,
        revision=revision,
        input=msgspec.Raw(msgspec.json.encode(inp)),
        note=decision.note,
        effects=msgspec.Raw(msgspec.json.encode(decision.effects)),
        changed=decision.changed,
    )
