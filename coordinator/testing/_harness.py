"""The whole runtime in one process: coordinator, participants, broker and store
in memory, on a virtual clock that jumps to the next timer.

It runs the same code as production except the adapters, so a test through it
covers the runtime (outbox, timers, dedupe) and the participants SDK, and a day
of saga time passes in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, final

import msgspec

from contracts import LIFECYCLE_EVENTS
from coordinator._dsl import sensitive_of
from coordinator._sealing import Keyring
from coordinator.adapters.memory import (
    MemoryBreakerStore,
    MemoryDeadLetters,
    MemoryIdempotencyStore,
    MemorySagaStore,
    MemoryTransport,
    VirtualClock,
)
from coordinator.breakers import BreakerBoard, policies
from coordinator.core import SagaDefinition, SagaState
from coordinator.ports import HistoryEntry, ParticipantService
from coordinator.runtime import Coordinator
from coordinator.telemetry import Telemetry

__all__ = ["Harness"]

# Turns of the event loop with no change before the system counts as quiet.
_QUIET_TURNS = 20


@final
class Harness:
    """Run sagas end to end in memory.

    Example::

        clock = VirtualClock()
        async with Harness([ORDER], build_services(ledger, clock), clock=clock) as h:
            await h.start("order.place", order, saga_id="o-1")
            state = await h.run_until_done("o-1")
            assert state.status == "completed"
    """

    def __init__(
        self,
        definitions: Iterable[SagaDefinition[Any]],
        services: Iterable[ParticipantService] = (),
        *,
        clock: VirtualClock | None = None,
        services_down: frozenset[str] = frozenset(),
        delivery_limit: int = 5,
        announce: Collection[str] = LIFECYCLE_EVENTS,
        breakers: bool = True,
        telemetry: Telemetry | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        definitions = list(definitions)
        if keyring is None and any(sensitive_of(d) for d in definitions):
            # Sensitive fields are sealed in the harness too (with a key of its own),
            # so a test sees what the store would hold.
            keyring = Keyring({"harness": os.urandom(32)}, "harness")
        self.keyring = keyring
        self.clock = clock or VirtualClock()
        self.transport = MemoryTransport(delivery_limit=delivery_limit)
        self.store = MemorySagaStore(clock=self.clock)
        self.idempotency = MemoryIdempotencyStore()
        # Services held down by the test, whatever the breakers say.
        self.services_down = set(services_down)
        self.breaker_store = MemoryBreakerStore(clock=self.clock)
        by_service, default = policies(definitions)
        self.breakers = BreakerBoard(
            self.breaker_store,
            self.store,
            clock=self.clock,
            services=by_service,
            policies=by_service,
            default=default,
            telemetry=telemetry,
        )
        self._breakers_on = breakers
        self.coordinator = Coordinator(
            definitions,
            transport=self.transport,
            store=self.store,
            clock=self.clock,
            breakers=_Health(self),
            announce=announce,
            telemetry=telemetry,
            dead_letters=MemoryDeadLetters(self.transport),
            keyring=keyring,
        )
        self.breakers.on_recovery(self.coordinator.resume_parked)
        self.workers = [
            s.worker(transport=self.transport, idempotency=self.idempotency, clock=self.clock)
            for s in services
        ]

    async def __aenter__(self) -> Harness:
        await self.coordinator.start(loops=False)
        for worker in self.workers:
            await worker.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.coordinator.stop()
        # A handler parked on the virtual clock would never wake, and stopping its
        # worker waits for it: release it first.
        self.clock.advance(timedelta(days=365))
        for worker in self.workers:
            await worker.stop()
        await self.transport.close()

    # -- driving sagas ----------------------------------------------------------------

    async def start(self, name: str, data: object, *, saga_id: str) -> SagaState[Any]:
        state, _created = await self.coordinator.start_saga(name, saga_id, data)
        return state

    async def signal(
        self, saga_id: str, name: str, data: msgspec.Struct | dict[str, Any] | None = None
    ) -> None:
        """Send a signal through the coordinator's API.

        Raises:
            SagaRefusedError: the saga refused it (recorded in its history).
        """
        payload = msgspec.to_builtins(data) if data is not None else {}
        await self.coordinator.signal(
            saga_id,
            name,
            payload,
            message_id=f"signal:{saga_id}:{name}:{self.clock.now().isoformat()}",
        )

    async def cancel(self, saga_id: str, reason: str = "cancelled by request") -> None:
        """Cancel the saga; raises ``SagaRefusedError`` where its status does not allow it."""
        await self.coordinator.cancel(
            saga_id, reason, message_id=f"cancel:{saga_id}:{self.clock.now().isoformat()}"
        )

    async def retry(self, saga_id: str) -> None:
        """Retry failed compensations; raises ``SagaRefusedError`` when there are none."""
        await self.coordinator.retry(
            saga_id, message_id=f"retry:{saga_id}:{self.clock.now().isoformat()}"
        )

    async def settle(self) -> None:
        """Run until nothing can move without the clock.

        Quiet means no queued message, and nothing changed over a run of event
        loop turns: every handler still running is parked on the virtual clock,
        or queued behind one that is (a retry waiting on its idempotency key).
        """
        quiet_turns, last = 0, None
        while quiet_turns < _QUIET_TURNS:
            await asyncio.sleep(0)
            now = (
                len(self.transport.published),
                len(self.transport.dead_letters),
                self.transport.backlog,
                self.transport.in_flight,
                self.clock.sleepers,
            )
            idle = self.transport.backlog == 0 and (self.transport.in_flight == 0 or now == last)
            quiet_turns = quiet_turns + 1 if idle else 0
            last = now

    async def tick(self) -> bool:
        """Fire due timers and let the breakers take a step; whether anything moved."""
        if await self.coordinator.fire_due_timers():
            return True
        return self._breakers_on and bool(await self.breakers.tick())

    async def advance(self, delta: timedelta) -> None:
        """Let ``delta`` of saga time pass: every timer and sleeper in it fires, in order."""
        until = self.clock.now() + delta
        while True:
            await self.settle()
            if await self.tick():
                continue
            upcoming = self._next_event()
            if upcoming is None or upcoming > until:
                break
            self.clock.advance_to(upcoming)
        self.clock.advance_to(until)
        await self.settle()

    async def run_until_done(
        self, saga_id: str, *, limit: timedelta = timedelta(days=30)
    ) -> SagaState[Any]:
        """Jump from event to event until the saga ends and nothing is left in flight."""
        horizon = self.clock.now() + limit
        while True:
            await self.settle()
            if await self.tick():
                continue
            state = await self.state(saga_id)
            upcoming = self._next_event()
            if state.terminal and (upcoming is None or not self.clock.sleepers):
                return state
            if upcoming is None or upcoming > horizon:
                return state
            self.clock.advance_to(upcoming)

    def _next_event(self) -> datetime | None:
        breaker = self.breakers.next_due() if self._breakers_on else None
        times = [
            t for t in (self.store.next_timer(), self.clock.next_wake(), breaker) if t is not None
        ]
        return min(times, default=None)

    # -- reading ------------------------------------------------------------------------

    async def state(self, saga_id: str) -> SagaState[Any]:
        state = await self.coordinator.load(saga_id)
        assert state is not None, f"no saga {saga_id!r}"
        return state

    async def history(self, saga_id: str) -> Sequence[HistoryEntry]:
        return await self.store.history(saga_id)


@final
class _Health:
    """The breakers, plus the services the test holds down by hand."""

    def __init__(self, harness: Harness) -> None:
        self._h = harness

    def services_down(self) -> frozenset[str]:
        board = self._h.breakers.services_down() if self._h._breakers_on else frozenset()
        return board | frozenset(self._h.services_down) if self._h.services_down else board

    def record(self, service: str, ok: bool) -> None:
        if self._h._breakers_on:
            self._h.breakers.record(service, ok)

    def dispatched(self, services: Collection[str]) -> None:
        self._h.breakers.dispatched(services)
