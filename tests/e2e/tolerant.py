"""The example order saga with step timeouts and attempts that ride out an outage.

``saga run --saga tolerant:saga`` (with tests/e2e on PYTHONPATH): every step of
`coordinator.examples.orders.saga` gets the timeout ``ORDERS_STEP_TIMEOUT`` (seconds) and
at least ``ORDERS_STEP_ATTEMPTS`` attempts, when those are set. A scenario
that injects an outage of a known length sets them so that no attempt's
timeout, or no step's attempts taken together, end within the outage: the
input alone then decides how each saga ends, as the checks assume.

Not for the ``slow`` shipper's orders, whose outcome depends on the ship
step's timeout being shorter than the shipper's 60 s.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta
from typing import Any

from coordinator.core._definition import ParallelDef, SagaDefinition, StepDef
from coordinator.core._retry import Retry
from coordinator.examples.orders.saga import saga as example


def _tolerant(step: StepDef[Any], timeout: timedelta | None, attempts: int) -> StepDef[Any]:
    r = step.retry
    retry = Retry(
        attempts=max(r.attempts, attempts),
        backoff=r.backoff,
        multiplier=r.multiplier,
        max_backoff=r.max_backoff,
        jitter=r.jitter,
        give_up_on=r.give_up_on,
    )
    return replace(step, retry=retry, timeout=timeout or step.timeout)


def tolerant(
    definition: SagaDefinition[Any], *, timeout: timedelta | None, attempts: int
) -> SagaDefinition[Any]:
    nodes: list[Any] = []
    for node in definition.nodes:
        if isinstance(node, StepDef):
            nodes.append(_tolerant(node, timeout, attempts))
        elif isinstance(node, ParallelDef):
            branches = tuple(_tolerant(b, timeout, attempts) for b in node.branches)
            nodes.append(replace(node, branches=branches))
        else:
            nodes.append(node)
    steps = {
        s.name: s
        for n in nodes
        for s in (n.branches if isinstance(n, ParallelDef) else (n,))
        if isinstance(s, StepDef)
    }
    return replace(definition, nodes=tuple(nodes), steps=steps)


_timeout = os.environ.get("ORDERS_STEP_TIMEOUT")
saga = tolerant(
    example,
    timeout=timedelta(seconds=float(_timeout)) if _timeout else None,
    attempts=int(os.environ.get("ORDERS_STEP_ATTEMPTS", "1")),
)
