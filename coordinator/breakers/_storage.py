"""pybreaker's storage, read from a local snapshot of the shared breaker.

pybreaker keeps its state machine (closed, open, half-open, ``fail_max``,
``success_threshold``, listeners) but reads and writes its counters through a
``CircuitBreakerStorage``. Its own ``CircuitRedisStorage`` is synchronous (2 to
6 blocking round trips per call) and does each transition as separate writes
that two replicas can interleave. This one does no I/O at all: it holds the
last copy of the shared breaker (``BreakerSnapshot``) and pybreaker's writes
change that copy only. The shared breaker changes only through
``BreakerStore.apply`` (one atomic script per outcome), and every answer of the
store replaces the copy (``install``).

Why that is safe:

* pybreaker only mirrors the shared state. When it sees a state it did not set
  (another replica tripped the breaker), it runs the new state's entry action
  (closed: reset the failure count; open and half-open: reset the success
  count) on this copy. The store's script does exactly the same on entering
  each state, so re-running it is harmless, and the next ``install`` brings the
  shared values anyway.
* Between an outcome and the store's answer (one round trip, or one refresh of
  about 250 ms) this replica may be ahead of the others (it saw the trip first:
  it stops sending at once) or behind (another replica tripped it: it stops at
  the next refresh, within a second). When its guess was wrong (it counted a
  fifth failure on a stale count and tripped locally, while another replica's
  success had reset the count), the store's answer puts it right.
"""

from __future__ import annotations

from datetime import datetime
from typing import final

import pybreaker

from coordinator.ports import BreakerSnapshot

__all__ = ["SnapshotStorage"]


@final
class SnapshotStorage(pybreaker.CircuitBreakerStorage):
    """A ``CircuitBreakerStorage`` on a local copy of the shared breaker; no I/O."""

    def __init__(self, service: str) -> None:
        super().__init__(service)
        self._state: str = pybreaker.STATE_CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at: datetime | None = None
        self.held = False

    def install(self, snap: BreakerSnapshot) -> None:
        """Take the shared breaker's values, as the store answered them."""
        self._state = snap.state
        self._failures = snap.failures
        self._successes = snap.successes
        self._opened_at = snap.opened_at
        self.held = snap.held

    # -- what pybreaker reads and writes --------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state

    def increment_counter(self) -> None:
        self._failures += 1

    def reset_counter(self) -> None:
        self._failures = 0

    def increment_success_counter(self) -> None:
        self._successes += 1

    def reset_success_counter(self) -> None:
        self._successes = 0

    @property
    def counter(self) -> int:
        return self._failures

    @property
    def success_counter(self) -> int:
        return self._successes

    @property
    def opened_at(self) -> datetime | None:
        return self._opened_at

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._opened_at = value
