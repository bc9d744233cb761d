"""What the runtime tells the circuit breakers, and what it asks them.

The feed rules, in one place (:func:`outcome`): which applied input says a
service is failing, which says it is healthy, and which says nothing.

* A reply ``TaskCompleted`` is a success.
* ``TaskFailed`` with ``retryable=True`` and an error type not in the step's
  ``give_up_on`` is a failure: the service itself is failing.
* A business refusal (``retryable=False``, or an error type in ``give_up_on``,
  such as a declined card) is a correct answer from a healthy service: it never
  counts as a failure; it counts as a success, as pybreaker counts an excluded
  error (it resets the failure count, and a probe answered so closes the breaker).
* A step timeout (the ``timeout`` timer of an attempt) is a failure.
* Compensations count the same way: an undo is a command to the same service,
  and its failing says as much about the service as an action's. (An undo is
  never refused for business reasons, so its failures are retryable ones.)

Each outcome counts once: only an input the core applied (``changed``) and the
store committed is counted; a duplicate, a late reply the core ignored, or a
stale timer is not.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol, final

from coordinator.core import (
    Decision,
    Input,
    SagaDefinition,
    StepCompleted,
    StepFailed,
    TimerFired,
    TimerKey,
)

__all__ = ["FixedHealth", "ServiceHealth", "outcome"]


class ServiceHealth(Protocol):
    """The circuit breakers, as the runtime uses them (``coordinator.breakers.BreakerBoard``)."""

    def services_down(self) -> frozenset[str]:
        """Services no command may be sent to now."""
        ...

    def record(self, service: str, ok: bool) -> None:
        """One outcome of a command to ``service``; must not block."""

    def dispatched(self, services: Collection[str]) -> None:
        """Commands to ``services`` were just decided (a probe held for one is spent)."""


def outcome(
    definition: SagaDefinition[Any], inp: Input, decision: Decision[Any]
) -> tuple[str, bool] | None:
    """``(service, ok)`` if the applied input is an outcome that feeds a breaker, else None."""
    if not decision.changed:
        return None
    match inp:
        case StepCompleted():
            step = definition.steps.get(inp.step)
            return None if step is None else (step.service, True)
        case StepFailed():
            step = definition.steps.get(inp.step)
            if step is None:
                return None
            business = not inp.retryable or inp.error_type in step.retry.give_up_on
            return step.service, business
        case TimerFired():
            key = TimerKey.parse(inp.timer)
            if key is None or key.kind != "timeout":
                return None
            step = definition.steps.get(key.step)
            return None if step is None else (step.service, False)
        case _:
            return None


@final
class FixedHealth:
    """No breakers: the services ``down`` names are down, nothing is counted."""

    def __init__(self, down: Callable[[], frozenset[str]]) -> None:
        self.services_down = down

    def record(self, service: str, ok: bool) -> None:
        return None

    def dispatched(self, services: Collection[str]) -> None:
        return None
