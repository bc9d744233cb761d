"""Some of the order services in one participant process:
``ORDERS_SERVICES=payments,loyalty saga participant split:services`` (with
tests/chaos on PYTHONPATH), so that a test can put a proxy in front of the
parallel branches' service alone."""

from __future__ import annotations

import os

from coordinator.examples.orders import worker
from participants import Service


def services() -> list[Service]:
    wanted = set(os.environ["ORDERS_SERVICES"].split(","))
    return [s for s in worker.services() if s.name in wanted]
