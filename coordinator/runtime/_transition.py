"""One transition of one saga: load -> decide -> commit, again on a conflict.

The commit is guarded by the revision that was loaded; a conflict means another
replica got there first, so the saga is loaded and decided again. The state of
each commit is kept (a bounded cache) so the next input for the saga usually
skips the load; correctness never depends on that copy (see ``apply``).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any, Protocol, final

import msgspec

from contracts import Codec
from coordinator._errors import ConcurrencyError, UnknownSagaError
from coordinator._sealing import Sealer
from coordinator.core import (
    NOTHING_DOWN,
    CancelTimer,
    Decision,
    Dispatch,
    Input,
    Notify,
    SagaDefinition,
    SagaState,
    Start,
    StartTimer,
    StepCompleted,
    StepFailed,
    TimerFired,
    decide,
    start,
)
from coordinator.ports import (
    Clock,
    Commit,
    CommitResult,
    Delivery,
    OutboxEntry,
    OutboxStore,
    ParkedSagas,
    Refusals,
    SagaQueries,
    SagaStore,
    SagaVersions,
    TimerStore,
)
from coordinator.runtime._health import ServiceHealth, outcome
from coordinator.runtime._outbox import OutboxPublisher
from coordinator.runtime._registry import Registry
from coordinator.runtime._translate import (
    MakeInput,
    command_entry,
    history_entry,
    lifecycle_entry,
)
from coordinator.telemetry import SagaScope, Telemetry

__all__ = ["CAS_ATTEMPTS", "Guard", "Store", "Transitions"]

CAS_ATTEMPTS = 20

Guard = Callable[[SagaDefinition[Any]], None]
"""Raises to refuse an input once the saga's definition is known; the saga is untouched."""


class Store(
    SagaStore, OutboxStore, TimerStore, SagaQueries, SagaVersions, Refusals, ParkedSagas, Protocol
):
    """What the coordinator needs from its storage."""


@final
class Transitions:
    """Loads, decides and commits inputs for the coordinator; publishes what committed."""

    def __init__(
        self,
        registry: Registry,
        *,
        store: Store,
        clock: Clock,
        codec: Codec,
        outbox: OutboxPublisher,
        health: ServiceHealth,
        announce: Collection[str],
        cache_size: int,
        telemetry: Telemetry,
        sealer: Sealer | None = None,
    ) -> None:
        self._registry = registry
        self._sealer = sealer if sealer is not None else Sealer(None, {})
        self._telemetry = telemetry
        self._store = store
        self._clock = clock
        self._codec = codec
        self._outbox = outbox
        self._health = health
        self._announce = frozenset(announce)
        self._cache: OrderedDict[str, SagaState[Any]] = OrderedDict()
        self._cache_size = cache_size

    async def load(self, saga_id: str) -> SagaState[Any] | None:
        stored = await self._store.load(saga_id)
        # A value that does not open raises SealedDataError: loud, never a silent default.
        return (
            None if stored is None else self._registry.decode(self._sealer.open_state(stored.state))
        )

    async def start(
        self,
        definition: SagaDefinition[Any],
        saga_id: str,
        data: object,
        dedupe_id: str,
        delivery: Delivery | None = None,
        *,
        by: str = "",
    ) -> tuple[SagaState[Any], bool]:
        """Create the saga; or, if it exists, return it untouched (and False)."""
        for _ in range(CAS_ATTEMPTS):
            # Commit first (it is refused if the saga exists), load only then: a new
            # saga costs one round trip.
            inp = Start(
                saga_id=saga_id,
                data=data,
                at=self._clock.now(),
                services_down=self._down(),
                by=by,
            )
            decision = start(definition, inp)
            if self._telemetry.tracing:
                trace = self._telemetry.root(
                    decision.state, None if delivery is None else delivery.headers
                )
                decision = msgspec.structs.replace(
                    decision, state=msgspec.structs.replace(decision.state, trace=trace)
                )
            self._spend_probes(decision)
            with SagaScope(saga_id), self._telemetry.transition(decision.state, "start", delivery):
                result = await self._commit(definition, None, inp, decision, dedupe_id)
            if result == "committed":
                self._remember(decision.state)
                return decision.state, True
            existing = await self.load(saga_id)
            if existing is not None:
                return existing, False
        raise ConcurrencyError(f"saga {saga_id!r}: could not start it after {CAS_ATTEMPTS} tries")

    async def apply(
        self,
        saga_id: str,
        dedupe_id: str,
        make: MakeInput,
        *,
        what: str,
        delivery: Delivery | None = None,
        guard: Guard | None = None,
    ) -> Decision[Any]:
        """Decide the input ``make`` builds (at the time of loading) and commit it.

        ``guard`` sees the saga's definition first and may raise to refuse the input.

        A change is committed against the revision it was decided on. A no-op is
        only recorded in the history, and only when decided on the stored state:
        decided on the kept copy, it may be news to the stored saga (another
        replica moved it on), so the saga is loaded and the input decided again.

        Raises:
            UnknownSagaError: no saga has that id.
            ConcurrencyError: still conflicting after ``CAS_ATTEMPTS`` loads.
        """
        state = self._cache.pop(saga_id, None)
        kept = state is not None
        if state is None:
            state = await self._load_known(saga_id)
        # ``what`` names the span: ``reply``, ``signal``, ``timeout``...
        with SagaScope(saga_id), self._telemetry.transition(state, what, delivery):
            return await self._apply(state, kept, dedupe_id, make, guard)

    async def _load_known(self, saga_id: str) -> SagaState[Any]:
        state = await self.load(saga_id)
        if state is None:
            raise UnknownSagaError(f"no saga with id {saga_id!r}")
        return state

    async def _apply(
        self,
        state: SagaState[Any] | None,
        kept: bool,
        dedupe_id: str,
        make: MakeInput,
        guard: Guard | None,
    ) -> Decision[Any]:
        saga_id = "" if state is None else state.saga_id
        for _ in range(CAS_ATTEMPTS):
            if state is None:
                state = await self._load_known(saga_id)
            definition = self._registry.definition(state.name, state.version)
            if guard is not None:
                guard(definition)
            inp = make(self._clock.now(), self._down())
            decision = decide(definition, state, inp)
            if decision.changed:
                self._spend_probes(decision)
                result = await self._commit(definition, state, inp, decision, dedupe_id)
                if result == "committed":
                    self._remember(decision.state)
                    # Counted once: only what the core applied and the store committed.
                    fed = outcome(definition, inp, decision)
                    if fed is not None:
                        self._health.record(*fed)
                if result != "conflict":
                    return decision
            elif not kept:
                await self._record_unchanged(state, inp, decision, dedupe_id)
                return decision
            # A conflict, or a no-op on the kept copy: load the saga and decide again.
            state, kept = None, False
        raise ConcurrencyError(f"saga {saga_id!r}: still conflicting after {CAS_ATTEMPTS} tries")

    def _down(self) -> frozenset[str]:
        return self._health.services_down() or NOTHING_DOWN

    def _spend_probes(self, decision: Decision[Any]) -> None:
        # Right after deciding, with no await in between: the next input decided on
        # this replica already sees a half-open breaker's probe as spent.
        services = {e.service for e in decision.effects if isinstance(e, Dispatch)}
        if services:
            self._health.dispatched(services)

    def _remember(self, state: SagaState[Any]) -> None:
        """Keep the state just committed: the next input for the saga skips the load."""
        if state.terminal or self._cache_size <= 0:
            return
        self._cache[state.saga_id] = state
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _record_unchanged(
        self, state: SagaState[Any], inp: Input, decision: Decision[Any], dedupe_id: str
    ) -> None:
        timer = inp.timer if isinstance(inp, TimerFired) else None
        entry = self._sealer.seal_entry(
            history_entry(state.revision, inp, decision, _input_id(inp, dedupe_id)),
            state.saga_id,
            state.name,
            state.version,
        )
        await self._store.record(state.saga_id, entry, timer=timer)
        self._remember(state)

    async def _commit(
        self,
        definition: SagaDefinition[Any],
        before: SagaState[Any] | None,
        inp: Input | Start[Any],
        decision: Decision[Any],
        dedupe_id: str,
    ) -> CommitResult:
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
                    outbox.append(lifecycle_entry(self._codec, state, effect, now, self._sealer))
                case StartTimer():
                    due[effect.timer] = effect.due
                case CancelTimer():
                    due.pop(effect.timer, None)
                    cancelled.append(effect.timer)
        # Sealed on the way to the store; the outbox published right after the commit
        # is the clear one (participants need the values their commands carry).
        seal = self._sealer
        key = (state.saga_id, state.name, state.version)
        result = await self._store.commit(
            Commit(
                saga_id=state.saga_id,
                name=definition.name,
                status=state.status,
                expected_revision=before.revision if before is not None else -1,
                revision=state.revision,
                state=seal.seal_state(msgspec.json.encode(state), *key),
                dedupe_id=dedupe_id,
                token=uuid.uuid4().hex,
                history=seal.seal_entry(
                    history_entry(state.revision, inp, decision, _input_id(inp, dedupe_id)), *key
                ),
                outbox=[seal.seal_outbox(e, state.name, state.version) for e in outbox],
                timers_due=due,
                timers_cancelled=cancelled,
                parked=_parked(definition, state),
            )
        )
        if result == "committed":
            with self._telemetry.decided(definition, before, inp, decision):
                await self._outbox.publish(outbox)
        return result


def _parked(definition: SagaDefinition[Any], state: SagaState[Any]) -> frozenset[str]:
    """The services the saga waits for: the store indexes it under each."""
    return frozenset(
        definition.steps[name].service for name, st in state.steps.items() if st.status in _PARKED
    )


_PARKED = frozenset({"awaiting_service", "compensation_awaiting_service"})


def _input_id(inp: Input | Start[Any], dedupe_id: str) -> str:
    # A due timer is no message: its dedupe id is made up here, not sent by anyone.
    if isinstance(inp, TimerFired):
        return ""
    # A reply's dedupe id adds its outcome (``dedupe_id``); the history names the message.
    return inp.message_id if isinstance(inp, StepCompleted | StepFailed) else dedupe_id
