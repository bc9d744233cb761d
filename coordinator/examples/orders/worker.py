"""The four order services as one participant process:
``saga participant coordinator.examples.orders.worker:services``.

Effects are written to the SQLite file named by ``ORDERS_LEDGER`` (default
``orders-ledger.sqlite3``), so tests can check that each happened exactly once.
"""

from __future__ import annotations

import os

from coordinator.adapters.memory import SystemClock
from coordinator.examples.orders.services import SqliteLedger, build_services
from participants import Service


def services() -> list[Service]:
    ledger = SqliteLedger(os.environ.get("ORDERS_LEDGER", "orders-ledger.sqlite3"))
    return build_services(ledger, SystemClock())
