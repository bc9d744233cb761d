"""Which thresholds each service's breaker runs with.

From the least to the most specific: the built-in defaults (``Breaker()``),
the deployment's ``SAGA_BREAKER_DEFAULTS``, the saga module's
``Saga(breakers={...})`` for that service, the deployment's ``SAGA_BREAKERS``
for that service. Settings win over the module: an operator can tighten or
loosen a breaker without a new release.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import msgspec

from coordinator._dsl import Breaker, breakers_of
from coordinator.core import SagaDefinition
from coordinator.ports import BreakerPolicy

__all__ = ["policies"]


def policies(
    definitions: Iterable[SagaDefinition[Any]],
    *,
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, BreakerPolicy], BreakerPolicy]:
    """Per-service policies of ``definitions``' services, and the default for the rest.

    ``defaults`` and each of ``overrides`` hold ``Breaker`` fields (``reset_timeout``
    as a ``timedelta`` or seconds).

    Raises:
        ValueError: a field that ``Breaker`` has not, or a value it refuses.
    """
    base = _merged(Breaker(), defaults or {})
    configured: dict[str, Breaker] = {}
    services: set[str] = set()
    for definition in definitions:
        services |= {step.service for step in definition.steps.values()}
        configured.update(breakers_of(definition))
    found = {s: configured.get(s, base) for s in services}
    for service, fields in (overrides or {}).items():
        found[service] = _merged(found.get(service, base), fields)
    return {s: _policy(b) for s, b in found.items()}, _policy(base)


def _merged(breaker: Breaker, fields: Mapping[str, Any]) -> Breaker:
    known = {"fail_max", "reset_timeout", "success_threshold", "probes"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"no breaker setting {', '.join(unknown)}; they are {sorted(known)}")
    values = {name: getattr(breaker, name) for name in known} | dict(fields)
    timeout = values["reset_timeout"]
    if not isinstance(timeout, timedelta):
        values["reset_timeout"] = timedelta(seconds=float(timeout))
    try:
        return msgspec.convert(values, Breaker, from_attributes=True)
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"breaker setting: {exc}") from None


def _policy(b: Breaker) -> BreakerPolicy:
    # A probe left unanswered (its saga moved on) gives its place back after the
    # reset timeout, so a half-open breaker is never stuck waiting for it.
    return BreakerPolicy(
        fail_max=b.fail_max,
        reset_timeout=b.reset_timeout,
        success_threshold=b.success_threshold,
        probes=b.probes,
        probe_lease=b.reset_timeout,
    )
