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
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from datetime import timedelta
from typing import Any, Protocol, final

import msgspec

from contracts import (
    DEFAULT_CODEC,
    LIFECYCLE_EVENTS,
    CancelSaga,
    Codec,
    ContractError,
    CoordinatorInbound,
    Signal,
    StartSaga,
    TaskCompleted,
    TaskFailed,
)
from coordinator._errors import (
    ConcurrencyError,
    SagaRefusedError,
    StoreUnavailableError,
    UnknownSagaError,
)
from coordinator.core import (
    NOTHING_DOWN,
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
    TimerFired,
    decide,
    start,
)
from coordinator.ports import (
    Clock,
    Commit,
    Delivery,
    OutboxEntry,
    OutboxStore,
    Refusal,
    Refusals,
    SagaQueries,
    SagaStore,
    Subscription,
    TimerStore,
    Transport,
)
from coordinator.runtime._outbox import OutboxPublisher
from coordinator.runtime._translate import command_entry, history_entry, input_for, lifecycle_entry

__all__ = ["Coordinator", "Store"]

_log = logging.getLogger("coordinator")

EVENTS_QUEUE = "coordinator.events"
_CAS_ATTEMPTS = 20


class Store(SagaStore, OutboxStore, TimerStore, SagaQueries, Refusals, Protocol):
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
        timer_interval: float = 0.2,
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
        self._announce = frozenset(announce)
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
        self._store_outage = store_outage
        self._cache: OrderedDict[str, SagaState[Any]] = OrderedDict()
        self._cache_size = cache_size
        self._prefetch = prefetch
        # With a single definition (the common case) a state decodes in one pass.
        self._only = next(iter(self._defs.values())) if len(self._defs) == 1 else None
        self._only_decoder = msgspec.json.Decoder(_state_type(self._only))
        self._outbox = OutboxPublisher(transport, store, clock, relay_after=relay_after)
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
        services = {s.service for d in self._defs.values() for s in d.steps.values()}
        for service in sorted(services):
            await self._transport.declare(f"{service}.commands", "commands", f"{service}.*")
        self._subscription = await self._transport.subscribe(
            EVENTS_QUEUE, "events", "#", self.handle, prefetch=self._prefetch
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
                    decision = await self._apply(
                        message.saga_id, message.message_id, input_for(message)
                    )
                    if decision.refused:
                        # The refusal is in the history already; the sender finds the
                        # message with the same reason among the dead letters.
                        what = "signal" if isinstance(message, Signal) else "cancel"
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
        definition = self._latest.get(name)
        if definition is None:
            known = ", ".join(sorted(self._latest)) or "none"
            raise UnknownSagaError(f"no saga definition named {name!r} (known: {known})")
        value = msgspec.convert(data, definition.data_type, from_attributes=True)
        for _ in range(_CAS_ATTEMPTS):
            # Commit first (it is refused if the saga exists), load only then: a new
            # saga costs one round trip.
            inp = Start(
                saga_id=saga_id, data=value, at=self._clock.now(), services_down=self._down()
            )
            decision = start(definition, inp)
            outcome = await self._commit(
                definition, None, inp, decision, message_id or f"start:{saga_id}"
            )
            if outcome == "committed":
                self._remember(decision.state)
                return decision.state, True
            existing = await self.load(saga_id)
            if existing is not None:
                return existing, False
        raise ConcurrencyError(f"saga {saga_id!r}: could not start it after {_CAS_ATTEMPTS} tries")

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
        return _taken(
            saga_id,
            await self._apply(
                saga_id,
                message_id,
                lambda at, down: SignalReceived(
                    message_id=message_id, name=name, data=data, at=at, services_down=down
                ),
            ),
        )

    async def cancel(self, saga_id: str, reason: str, message_id: str) -> Decision[Any]:
        """Stop a saga and compensate what it did.

        Raises:
            UnknownSagaError: no saga has that id.
            SagaRefusedError: the saga has ended, is compensating already or is
                past its pivot.
        """
        return _taken(
            saga_id,
            await self._apply(
                saga_id,
                message_id,
                lambda at, down: CancelRequested(reason=reason, at=at, services_down=down),
            ),
        )

    async def retry(self, saga_id: str, message_id: str) -> Decision[Any]:
        """Try a failed saga's failed compensations again.

        Raises:
            UnknownSagaError: no saga has that id.
            SagaRefusedError: the saga has no failed compensation.
        """
        return _taken(
            saga_id,
            await self._apply(
                saga_id, message_id, lambda at, down: RetryRequested(at=at, services_down=down)
            ),
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
        return await self._outbox.relay(limit)

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
        if self._only is not None:
            state: SagaState[Any] = self._only_decoder.decode(stored.state)
            if (state.name, state.version) == (self._only.name, self._only.version):
                return state
        header = msgspec.json.decode(stored.state, type=_Header)
        definition = self.definition(header.name, header.version)
        decoded: SagaState[Any] = msgspec.json.decode(stored.state, type=_state_type(definition))
        return decoded

    # -- the transition -----------------------------------------------------------------

    def _remember(self, state: SagaState[Any]) -> None:
        """Keep the state just committed: the next input for the saga skips the load.

        Correctness never depends on it: the commit compares revisions, and a
        no-op decided on a kept copy is checked again against the store.
        """
        if state.terminal or self._cache_size <= 0:
            return
        self._cache[state.saga_id] = state
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _down(self) -> frozenset[str]:
        return self._services_down() or NOTHING_DOWN

    async def _apply(
        self, saga_id: str, dedupe_id: str, make: Callable[..., Input]
    ) -> Decision[Any]:
        cached = self._cache.pop(saga_id, None)
        for _ in range(_CAS_ATTEMPTS):
            state = cached or await self.load(saga_id)
            if state is None:
                raise UnknownSagaError(f"no saga with id {saga_id!r}")
            definition = self.definition(state.name, state.version)
            inp = make(self._clock.now(), self._down())
            decision = decide(definition, state, inp)
            if not decision.changed:
                if cached is not None:
                    cached = None  # a no-op on a kept copy may be news to the stored saga
                    continue
                timer = inp.timer if isinstance(inp, TimerFired) else None
                entry = history_entry(state.revision, inp, decision, _input_id(inp, dedupe_id))
                await self._store.record(saga_id, entry, timer=timer)
                self._remember(state)
                return decision
            cached = None
            outcome = await self._commit(definition, state, inp, decision, dedupe_id)
            if outcome == "committed":
                self._remember(decision.state)
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
        now = self._clock.now()
        outbox: list[OutboxEntry] = []
        due: dict[str, Any] = {}
        cancelled: list[str] = [inp.timer] if isinstance(inp, TimerFired) else []
        for effect in decision.effects:
            match effect:
                case Dispatch():
                    outbox.append(command_entry(self._codec, state, effect, dedupe_id, now))
                case Notify() if effect.event in self._announce:
                    outbox.append(lifecycle_entry(self._codec, state, effect, now))
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
                history=history_entry(state.revision, inp, decision, _input_id(inp, dedupe_id)),
                outbox=outbox,
                timers_due=due,
                timers_cancelled=cancelled,
            )
        )
        if result == "committed":
            await self._outbox.publish(outbox)
        return result


def _taken(saga_id: str, decision: Decision[Any]) -> Decision[Any]:
    if decision.refused:
        raise SagaRefusedError(saga_id, decision.refused)
    return decision


def _input_id(inp: Input | Start[Any], dedupe_id: str) -> str:
    # A due timer is no message: its dedupe id is made up here, not sent by anyone.
    return "" if isinstance(inp, TimerFired) else dedupe_id


def _state_type(definition: SagaDefinition[Any] | None) -> Any:
    """``SagaState[data type]`` of a definition, for msgspec to decode into."""
    return SagaState[definition.data_type] if definition else SagaState[Any]  # type: ignore[name-defined]
