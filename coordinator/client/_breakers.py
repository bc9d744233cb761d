"""The operator's circuit-breaker tools, on the ports: list the breakers, and open,
close or reset one by hand. The CLI (``saga breakers``, ``saga breaker``) and the
REST API call these; a test runs them on the memory adapters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import msgspec

from coordinator._errors import RequestRefusedError
from coordinator.ports import (
    BreakerEvent,
    BreakerPolicy,
    BreakerState,
    BreakerStore,
    ParkedSagas,
)

__all__ = ["BreakerStatus", "Override", "breaker_events", "breaker_statuses", "override_breaker"]

Override = Literal["open", "close", "reset"]


class BreakerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One service's breaker as an operator sees it.

    Attributes:
        service: The participant service.
        state: ``closed``, ``open`` or ``half-open``.
        failures: Consecutive failures counted (closed).
        half_open_at: When an open breaker lets probes through (None: not open, or
            held open by an operator).
        held: An operator opened it; it stays open until closed or reset.
        parked: Sagas waiting for the service.
    """

    service: str
    state: BreakerState
    failures: int
    half_open_at: datetime | None
    held: bool
    parked: int


async def breaker_statuses(breakers: BreakerStore, parked: ParkedSagas) -> list[BreakerStatus]:
    """Every known service's breaker (those the coordinators watch), by name."""
    services = await breakers.known()
    snaps = await breakers.snapshot(services)
    return [
        BreakerStatus(
            service=s,
            state=snaps[s].state,
            failures=snaps[s].failures,
            half_open_at=snaps[s].half_open_at,
            held=snaps[s].held,
            parked=await parked.parked_count(s),
        )
        for s in services
    ]


async def override_breaker(
    breakers: BreakerStore,
    parked: ParkedSagas,
    service: str,
    action: Override,
    *,
    reason: str,
    by: str,
    policy: BreakerPolicy | None = None,
) -> BreakerStatus:
    """Open (and hold), close or reset ``service``'s breaker by hand, recorded in its
    event log with ``by`` and ``reason``.

    Closing resumes every saga parked for the service: the coordinators see the
    breaker closed at their next refresh and resume them.

    Raises:
        RequestRefusedError: no coordinator knows the service, or ``reason`` is empty.
    """
    if not reason.strip():
        raise RequestRefusedError("a reason is required (--reason): it goes in the event log")
    known = await breakers.known()
    if service not in known:
        names = ", ".join(known) or "none yet"
        raise RequestRefusedError(f"unknown service {service!r}; the breakers are: {names}")
    await breakers.apply(service, action, policy or BreakerPolicy(), reason=reason, by=by)
    [status] = [s for s in await breaker_statuses(breakers, parked) if s.service == service]
    return status


async def breaker_events(
    breakers: BreakerStore, service: str, limit: int = 20
) -> Sequence[BreakerEvent]:
    """The latest transitions and operator acts of ``service``'s breaker, newest first."""
    return await breakers.events(service, limit)
