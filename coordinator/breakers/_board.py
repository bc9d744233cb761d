"""The circuit breakers of one coordinator replica, shared with the others through
a ``BreakerStore``.

What each replica does:

* ``record`` (called by the runtime once per outcome it applied) runs the
  outcome through the service's pybreaker ``CircuitBreaker``, whose storage is a
  local copy (``SnapshotStorage``): this replica reacts at once. The outcome is
  queued for the store, where one script counts it on the shared breaker.
* ``tick`` (every ``refresh`` by ``run``; by the test harness on its virtual
  clock) sends the queued outcomes, refreshes every copy from the store
  (opening to half-open when ``reset_timeout`` has passed, on the store's
  clock), and resumes parked sagas: when a breaker is half-open it takes
  probes from the store (at most ``probes`` across every replica) and resumes
  that many parked sagas, or lets that many new commands out; when it is
  closed, one replica (a lease) resumes every saga parked for the service.
* ``services_down`` is what the runtime passes to the core with every input:
  the open breakers, and the half-open ones this replica holds no probe for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import final

import pybreaker

from coordinator._tasks import stop_task
from coordinator.breakers._storage import SnapshotStorage
from coordinator.ports import (
    BreakerOp,
    BreakerPolicy,
    BreakerSnapshot,
    BreakerStore,
    Clock,
    ParkedSagas,
)
from coordinator.telemetry import Telemetry

__all__ = ["BreakerBoard", "Resume"]

_log = logging.getLogger("coordinator.breakers")

Resume = Callable[[str, int], Awaitable[int]]
"""``resume(service, limit)``: send ``ServiceRecovered`` to at most ``limit`` sagas parked
for ``service``; returns how many it resumed (the coordinator's ``resume_parked``)."""

REFRESH = timedelta(milliseconds=250)
# Sagas one replica resumes per service and tick when a breaker closes; the lease keeps
# the others off the same sagas while it does.
_SWEEP_BATCH = 500
_SWEEP_LEASE = timedelta(seconds=5)


class _ServiceFailed(Exception):
    """What a failed outcome looks like to pybreaker, which counts exceptions."""


def _ok() -> None:
    return None


def _failed() -> None:
    raise _ServiceFailed


@final
class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, board: BreakerBoard) -> None:
        self._board = board

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state is not None else "?"
        _log.info("breaker %s: %s -> %s", cb.name, old, new_state.name)
        self._board._telemetry.breaker_changed(
            cb.name or "", old_state.name if old_state is not None else None, new_state.name
        )
        self._board._changed()


@final
class BreakerBoard:
    """One pybreaker ``CircuitBreaker`` per participant service, shared through ``store``.

    Args:
        store: The shared breakers.
        parked: The index of parked sagas (the saga store).
        clock: This replica's clock (``RedisClock`` in production); the store
            times the breakers on its own.
        services: The services to watch from the start (those of the definitions).
        policies: Per-service thresholds; others get ``default``.
        refresh: How often ``run`` ticks.
        telemetry: Where each breaker's state changes are reported (the metrics), as
            this replica sees them: its own and those it reads from the store.
    """

    def __init__(
        self,
        store: BreakerStore,
        parked: ParkedSagas,
        *,
        clock: Clock,
        services: Iterable[str] = (),
        policies: Mapping[str, BreakerPolicy] | None = None,
        default: BreakerPolicy | None = None,
        refresh: timedelta = REFRESH,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._store = store
        self._telemetry = telemetry if telemetry is not None else Telemetry()
        self._parked = parked
        self._clock = clock
        self._policies = dict(policies or {})
        self._default = default or BreakerPolicy()
        self._refresh = refresh
        self._holder = uuid.uuid4().hex
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._storages: dict[str, SnapshotStorage] = {}
        self._queue: list[tuple[str, BreakerOp]] = []
        # The outcomes of the tick under way that the store has not answered yet.
        self._sending: list[tuple[str, BreakerOp]] = []
        # Probes this replica holds, per service: each lets one command out while half-open.
        self._admissions: dict[str, list[datetime]] = {}
        self._down: frozenset[str] = frozenset()
        self._resume: Resume | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        for service in services:
            self._breaker(service)

    # -- the runtime's side (ServiceHealth) -------------------------------------------

    def services_down(self) -> frozenset[str]:
        """Services no command may go to now: open, or half-open without a probe here."""
        return self._down

    def record(self, service: str, ok: bool) -> None:
        """Count one outcome of a command to ``service`` (see the runtime's feed rules).

        Nothing counts while the breaker is open (a reply to a command sent before it
        opened): the store's script ignores it; pybreaker here is not even asked.
        """
        breaker = self._breaker(service)
        if ok and breaker.current_state == pybreaker.STATE_CLOSED and breaker.fail_counter == 0:
            # Nothing to reset, here or (as far as the last refresh knows) in the store:
            # the hot path of a healthy service costs no round trip.
            return
        if breaker.current_state != pybreaker.STATE_OPEN:
            with contextlib.suppress(_ServiceFailed, pybreaker.CircuitBreakerError):
                breaker.call(_ok if ok else _failed)
            # After the call, not in the listener: pybreaker notifies before it writes
            # the new state to the storage.
            self._changed()
        # Sent to the store even when this copy says open: the copy may be a refresh
        # behind (the breaker half-opened and this is the probe's answer, handled by
        # a replica that has not seen it yet); the store ignores it if it is open.
        op: BreakerOp = "success" if ok else "failure"
        if ok and (service, op) in self._queue:
            return  # successes in one tick say the same thing once
        self._queue.append((service, op))
        self._wake.set()

    def dispatched(self, services: Collection[str]) -> None:
        """Commands to ``services`` were decided: each spends a probe held for it, if any."""
        for service in services:
            held = self._admissions.get(service)
            if held:
                held.pop(0)
                if not held:
                    self._changed()

    # -- wiring ---------------------------------------------------------------------

    def on_recovery(self, resume: Resume) -> None:
        """Tell the board how to resume parked sagas (the coordinator's ``resume_parked``)."""
        self._resume = resume

    def policy(self, service: str) -> BreakerPolicy:
        return self._policies.get(service, self._default)

    def breaker(self, service: str) -> pybreaker.CircuitBreaker:
        """The pybreaker breaker of ``service`` (for its listeners and its state)."""
        return self._breaker(service)

    async def start(self) -> None:
        # Registers every service with the store (the operator's list), then the loop.
        for service in list(self._breakers):
            self._install(await self._store.apply(service, "refresh", self.policy(service)))
        await self.tick()
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="saga-breakers")

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await stop_task(self._task)
            self._task = None

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except Exception:  # an outage must not end the loop
                _log.warning("breaker refresh failed; trying again", exc_info=True)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._refresh.total_seconds())

    # -- one tick -------------------------------------------------------------------

    async def tick(self) -> int:
        """Send the queued outcomes, refresh every copy, resume what may go now.

        Returns how many parked sagas it resumed.
        """
        self._sending, self._queue = self._queue, []
        try:
            while self._sending:
                service, op = self._sending[0]
                snap = await self._store.apply(service, op, self.policy(service))
                del self._sending[0]
                self._install(snap)
        finally:
            self._sending = []
        await self._refresh_all()
        resumed = 0
        for service in list(self._breakers):
            resumed += await self._recover(service)
        return resumed

    def next_due(self) -> datetime | None:
        """When the earliest open breaker half-opens (the harness's clock jumps there)."""
        due = [
            s.opened_at + self.policy(name).reset_timeout
            for name, s in self._storages.items()
            if s.state == pybreaker.STATE_OPEN and s.opened_at is not None and not s.held
        ]
        return min(due, default=None)

    async def _refresh_all(self) -> None:
        open_ = [s for s, st in self._storages.items() if st.state == pybreaker.STATE_OPEN]
        for service in open_:
            # ``refresh`` moves it to half-open on the store's clock when it is time.
            self._install(await self._store.apply(service, "refresh", self.policy(service)))
        rest = [s for s in self._storages if s not in open_]
        if rest:
            for snap in (await self._store.snapshot(rest)).values():
                self._install(snap)

    async def _recover(self, service: str) -> int:
        state = self._storages[service].state
        if state == pybreaker.STATE_HALF_OPEN:
            return await self._probe(service)
        if (
            state == pybreaker.STATE_CLOSED
            and self._resume is not None
            and await self._parked.parked_count(service)
            and await self._store.lease(f"sweep:{service}", self._holder, _SWEEP_LEASE)
        ):
            return await self._resume(service, _SWEEP_BATCH)
        return 0

    async def _probe(self, service: str) -> int:
        now = self._clock.now()
        held = [t for t in self._admissions.get(service, []) if t > now]
        if not held:
            snap = await self._store.apply(service, "probe", self.policy(service))
            self._install(snap)
            if snap.granted:
                held = [now + self.policy(service).probe_lease]
        self._admissions[service] = held
        self._changed()
        if held and self._resume is not None:
            # A probe held and no saga parked is kept for the next new command instead.
            return await self._resume(service, len(held))
        return 0

    def _install(self, snap: BreakerSnapshot) -> None:
        if self._unsent(snap.service):
            # The store answered before it saw an outcome this copy has already counted
            # (recorded during the round trip): installing it would undo that outcome
            # here, e.g. close a breaker that just tripped and let the next command
            # out. The store's answer to that outcome comes within this tick or the next.
            return
        storage = self._storages.get(snap.service)
        if storage is None:
            self._breaker(snap.service)
            storage = self._storages[snap.service]
        storage.install(snap)
        if snap.state != pybreaker.STATE_HALF_OPEN:
            self._admissions.pop(snap.service, None)
        # Reading the state lets pybreaker notice a change made elsewhere and run its
        # listeners; its entry actions touch only this copy, and match the script's.
        self._breakers[snap.service].state  # noqa: B018
        storage.install(snap)
        self._changed()

    def _unsent(self, service: str) -> bool:
        return any(s == service for s, _ in self._sending) or any(
            s == service for s, _ in self._queue
        )

    def _breaker(self, service: str) -> pybreaker.CircuitBreaker:
        breaker = self._breakers.get(service)
        if breaker is None:
            policy = self.policy(service)
            storage = SnapshotStorage(service)
            breaker = pybreaker.CircuitBreaker(
                fail_max=policy.fail_max,
                reset_timeout=policy.reset_timeout.total_seconds(),
                success_threshold=policy.success_threshold,
                state_storage=storage,
                listeners=[_Listener(self)],
                name=service,
            )
            self._breakers[service], self._storages[service] = breaker, storage
            self._telemetry.breaker_changed(service, None, breaker.current_state)
        return breaker

    def _changed(self) -> None:
        down = set()
        for service, storage in self._storages.items():
            if storage.state == pybreaker.STATE_OPEN or (
                storage.state == pybreaker.STATE_HALF_OPEN and not self._admissions.get(service)
            ):
                down.add(service)
        self._down = frozenset(down)
